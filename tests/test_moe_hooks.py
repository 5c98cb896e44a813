"""MoE hook sites (router logits, chosen ids, weights, expert outputs, shared output): present with their shapes,
cached, and honoured by the forward (ban, force, re-weight, replace ids); steering and folding at the MoE output."""

from __future__ import annotations

import pytest
import torch

from interventions import AffineMap, Plan
from interventions.fold import fold
from mdm_lens.sites import get_act_name
from mdm_lens.testing import tiny_model

MOE_ROLES = ("router_logits", "expert_indices", "expert_weights", "expert_out", "shared_out")
LAYER = 1  # layer 0 is dense in both tiny configs; 1 and 2 are MoE


@pytest.fixture(scope="module", params=["llada2", "lladamoe"])
def moe(request):
    return tiny_model(request.param, seed=3)


def _ids(n: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 250, (2, n), generator=torch.Generator().manual_seed(seed))


def _cache(model, ids, names):
    _, cache = model.run_with_cache(ids, names_filter=names)
    return cache


def test_sites_shapes_and_cache(moe):
    """The MoE roles exist on MoE layers only, with TL names, resolved shapes, and run_with_cache carries them."""
    d, e, k = moe.cfg.d_model, moe.model.cfg.num_experts, moe.model.cfg.num_experts_per_tok
    want = {
        "router_logits": (e,),
        "expert_indices": (k,),
        "expert_weights": (k,),
        "expert_out": (k, d),
        "shared_out": (d,),
    }
    for role in MOE_ROLES:
        assert get_act_name(role, 0) not in moe.hook_names  # dense layer: a plain MLP, no routing
        site = moe.site(get_act_name(role, LAYER))
        assert site.shape == ("batch", "pos", *want[role]) and site.role == role
    assert get_act_name("mlp_pre", LAYER) not in moe.hook_names and get_act_name("mlp_pre", 0) in moe.hook_names
    names = [get_act_name(r, LAYER) for r in MOE_ROLES] + [get_act_name("mlp_out", LAYER)]
    cache = _cache(moe, _ids(), names)
    for role in MOE_ROLES:
        assert tuple(cache[get_act_name(role, LAYER)].shape) == (2, 10, *want[role])
    assert cache[get_act_name("expert_indices", LAYER)].dtype == torch.int64


def test_expert_out_is_each_chosen_expert_and_output_is_their_weighted_sum(moe):
    """Read back independently: slot j of hook_expert_out is expert idx[j] applied to the MLP input, and
    hook_mlp_out is sum_j w_j * out_j + shared."""
    names = [get_act_name(r, LAYER) for r in (*MOE_ROLES, "ln2_out", "mlp_out")]
    c = _cache(moe, _ids(), names)
    get = lambda r: c[get_act_name(r, LAYER)]  # noqa: E731
    block = moe.model.model.layers[LAYER].mlp
    h, idx = get("ln2_out"), get("expert_indices")
    for b, p, j in [(0, 0, 0), (1, 7, 1), (0, 9, 1)]:
        direct = block.experts[int(idx[b, p, j])](h[b, p])
        torch.testing.assert_close(get("expert_out")[b, p, j], direct, rtol=0, atol=1e-6)
    hand = (get("expert_out") * get("expert_weights")[..., None]).sum(-2) + get("shared_out")
    torch.testing.assert_close(get("mlp_out"), hand, rtol=0, atol=1e-5)


def test_unhooked_forward_is_unchanged_by_identity_hooks(moe):
    ids = _ids()
    base = moe(ids)
    with moe.hooks({get_act_name(r, layer): (lambda a, ctx: a) for r in MOE_ROLES for layer in (1, 2)}):
        assert torch.equal(moe(ids), base)


def _usage(model, ids) -> torch.Tensor:
    idx = _cache(model, ids, [get_act_name("expert_indices", LAYER)])[get_act_name("expert_indices", LAYER)]
    return torch.bincount(idx.flatten(), minlength=model.model.cfg.num_experts)


def test_ban_and_force_an_expert(moe):
    ids, site = _ids(seed=1), get_act_name("router_logits", LAYER)
    base_use, base = _usage(moe, ids), moe(ids)
    top = int(base_use.argmax())
    idle = int(base_use.argmin())

    def ban(a, ctx):
        a = a.clone()
        a[..., top] = float("-inf")
        return a

    def force(a, ctx):
        a = a.clone()
        a[..., idle] = float("inf")
        return a

    with moe.hooks({site: ban}):
        assert int(_usage(moe, ids)[top]) == 0
        assert not torch.allclose(moe(ids), base)
    with moe.hooks({site: force}):
        n_tokens = ids.numel()
        assert int(_usage(moe, ids)[idle]) == n_tokens  # chosen at every position
        assert torch.isfinite(moe(ids)).all()
    assert torch.equal(moe(ids), base)  # hooks gone, model as it was


def test_reweight_equals_hand_combination(moe):
    """Doubling the first slot's weight: the output is the hand-computed combination with the new weights."""
    ids = _ids(seed=2)
    names = [get_act_name(r, LAYER) for r in ("expert_out", "expert_weights", "shared_out", "mlp_out")]

    def double_first(w, ctx):
        w = w.clone()
        w[..., 0] *= 2
        return w

    before = _cache(moe, ids, names)
    with moe.hooks({names[1]: double_first}):
        after = _cache(moe, ids, names)
    w = before[names[1]].clone()
    w[..., 0] *= 2
    torch.testing.assert_close(after[names[1]], w)
    hand = (before[names[0]] * w[..., None]).sum(-2) + before[names[2]]
    torch.testing.assert_close(after[names[3]], hand, rtol=0, atol=1e-5)
    assert not torch.allclose(after[names[3]], before[names[3]])


def test_replaced_ids_get_their_own_weights_and_bad_ids_are_refused(moe):
    ids, site = _ids(seed=4), get_act_name("expert_indices", LAYER)
    block = moe.model.model.layers[LAYER].mlp
    names = [get_act_name(r, LAYER) for r in ("router_logits", "expert_weights", "expert_indices")]
    with moe.hooks({site: lambda a, ctx: torch.zeros_like(a) + torch.arange(a.shape[-1])}):  # experts 0..k-1
        c = _cache(moe, ids, names)
    chosen = c[names[2]]
    assert bool((chosen == torch.arange(chosen.shape[-1])).all())
    expect = block.router.weights(c[names[0]], block.bias, chosen)
    torch.testing.assert_close(c[names[1]], expect)
    base = moe(ids)
    with pytest.raises(ValueError, match="expert ids outside 0..7"):
        with moe.hooks({site: lambda a, ctx: a + 100}):
            moe(ids)
    assert torch.equal(moe(ids), base)


def _map(d: int, beta: bool, seed: int = 0) -> AffineMap:
    g = torch.Generator().manual_seed(seed)
    omega = torch.eye(d, dtype=torch.float64) + 0.05 * torch.randn(d, d, generator=g, dtype=torch.float64)
    b = 0.1 * torch.randn(d, generator=g, dtype=torch.float64) if beta else None
    return AffineMap(d, "full", omega, b)


@pytest.mark.parametrize("role", ["mlp_out", "expert_out"])
def test_steering_at_moe_output_and_exact_fold(moe, role):
    """A Plan attaches at the MoE output like any MLP site; folding it (omega into every expert's down
    projection, omega and beta into the shared expert's) gives the steered logits and restores bit for bit."""
    ids, site = _ids(seed=5), get_act_name(role, LAYER)
    plan = Plan({site: _map(moe.cfg.d_model, beta=True)})
    base = moe(ids)
    before = {k: v.clone() for k, v in moe.model.state_dict().items()}
    with moe.steer(plan):
        steered = moe(ids)
    assert (steered - base).abs().max() > 1e-3
    with fold(moe, plan):
        folded = moe(ids)
    # float32; folded weights are rounded once to float32 from the float64 product: ~1e-6 of the logits
    torch.testing.assert_close(folded, steered, rtol=0, atol=2e-5)
    assert all(torch.equal(before[k], v) for k, v in moe.model.state_dict().items())
    assert torch.equal(moe(ids), base)


def test_fold_with_translation_is_refused_without_shared_experts():
    model = tiny_model("lladamoe", seed=1, shared_expert_intermediate_size=None)
    site = get_act_name("mlp_out", LAYER)
    d = model.cfg.d_model
    with pytest.raises(ValueError, match=r"cannot fold 'blocks\.1\.hook_mlp_out'.*no shared expert.*model\.steer"):
        fold(model, Plan({site: _map(d, beta=True)}))
    assert model.active_fold is None
    ids = _ids(seed=6)
    plan = Plan({site: _map(d, beta=False)})  # omega alone folds exactly into the experts' down projections
    with model.steer(plan):
        steered = model(ids)
    with fold(model, plan):
        torch.testing.assert_close(model(ids), steered, rtol=0, atol=2e-5)
