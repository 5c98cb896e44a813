"""HookedMDM: site table, hook semantics, step context, caches, errors that leave the model intact."""

import pytest
import torch

from mdm_lens import get_act_name
from mdm_lens.sites import LAYER_ROLES

CANONICAL = [
    "hook_resid_pre",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_pre",
    "mlp.hook_pre_linear",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]


def _ids(model, b=2, p=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 250, (b, p), generator=g)


def _no_hooks_left(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("fixture", ["tiny_llada", "tiny_dream"])
def test_every_canonical_site_exists(request, fixture):
    model = request.getfixturevalue(fixture)
    names = set(model.hook_names)
    for layer in range(model.n_layers):
        for s in CANONICAL:
            assert f"blocks.{layer}.{s}" in names
    assert {"hook_embed", "ln_final.hook_out", "ln_final.hook_normalized", "hook_logits"} <= names
    assert get_act_name("mlp_out", 1) == "blocks.1.hook_mlp_out"
    assert model.site("blocks.1.mlp.hook_out").name == "blocks.1.hook_mlp_out"  # the bridge's name: an alias
    assert get_act_name("resid_post", 0) == "blocks.0.hook_resid_post"


@pytest.mark.parametrize("fixture", ["tiny_llada", "tiny_dream"])
def test_cache_obeys_the_residual_algebra(request, fixture):
    model = request.getfixturevalue(fixture)
    logits, cache = model.run_with_cache(_ids(model))
    torch.testing.assert_close(cache["hook_logits"], logits)
    for l in range(model.n_layers):
        c = {role: cache[get_act_name(role, l)] for role in LAYER_ROLES}
        torch.testing.assert_close(c["resid_mid"], c["resid_pre"] + c["attn_out"])
        torch.testing.assert_close(c["resid_post"], c["resid_mid"] + c["mlp_out"])
        torch.testing.assert_close(c["mlp_post"], torch.nn.functional.silu(c["mlp_pre"]) * c["mlp_pre_linear"])
        if l + 1 < model.n_layers:
            torch.testing.assert_close(cache[get_act_name("resid_pre", l + 1)], c["resid_post"])
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], cache["hook_embed"])
    for name, act in cache.items():  # width = the last size of the site's shape (0: ids, scores, pattern)
        assert act.shape[-1] == model.site(name).width or model.site(name).shape[-1] in ("pos", "key"), name


def test_plain_forward_context_says_so(tiny_llada):
    seen = []
    ids = _ids(tiny_llada)
    ids[:, -2:] = tiny_llada.mask_id
    with tiny_llada.hooks({"blocks.0.hook_resid_post": lambda a, ctx: seen.append(ctx)}):
        tiny_llada(ids)
    (ctx,) = seen
    assert not ctx.in_sampler and ctx.step is None and ctx.t is None
    assert ctx.masked.shape == ids.shape and ctx.masked[:, -2:].all() and not ctx.masked[:, :-2].any()
    assert ctx.prompt_mask.all() and not ctx.padding.any()


def test_replacement_changes_logits_and_none_keeps_them(tiny_llada):
    ids = _ids(tiny_llada)
    base = tiny_llada(ids)
    with tiny_llada.hooks({"blocks.1.mlp.hook_out": lambda a, ctx: None}):
        torch.testing.assert_close(tiny_llada(ids), base, rtol=0, atol=0)
    with tiny_llada.hooks({"blocks.1.mlp.hook_out": lambda a, ctx: a * 0}):
        zeroed = tiny_llada(ids)
    assert not torch.allclose(zeroed, base)
    # several fns at one site run in order
    with tiny_llada.hooks({"blocks.1.mlp.hook_out": [lambda a, c: a + 1, lambda a, c: a * 2]}):
        two = tiny_llada(ids)
    with tiny_llada.hooks({"blocks.1.mlp.hook_out": lambda a, c: (a + 1) * 2}):
        one = tiny_llada(ids)
    torch.testing.assert_close(two, one)
    assert _no_hooks_left(tiny_llada)


def test_input_kind_site_is_editable(tiny_llada):
    """mlp.hook_post may be an input-kind site in some families; editing it must change the output."""
    ids = _ids(tiny_llada)
    base = tiny_llada(ids)
    with tiny_llada.hooks({"blocks.0.mlp.hook_post": lambda a, ctx: torch.zeros_like(a)}):
        out = tiny_llada(ids)
    assert not torch.allclose(out, base)


def test_unknown_site_names_closest(tiny_llada):
    with pytest.raises(KeyError, match="blocks.1.hook_resid_post"):
        with tiny_llada.hooks({"blocks.1.hook_resid_pots": lambda a, c: None}):
            pass
    assert _no_hooks_left(tiny_llada)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_bad_replacement_names_site_and_leaves_model_intact(tiny_llada):
    before = _params(tiny_llada)
    with pytest.raises(ValueError, match=r"blocks\.0\.hook_resid_mid.*shape"):
        with tiny_llada.hooks({"blocks.0.hook_resid_mid": lambda a, c: a[:, :1]}):
            tiny_llada(_ids(tiny_llada))
    with pytest.raises(ValueError, match="dtype"):
        with tiny_llada.hooks({"blocks.0.hook_resid_mid": lambda a, c: a.double()}):
            tiny_llada(_ids(tiny_llada))
    assert _no_hooks_left(tiny_llada)
    after = _params(tiny_llada)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_exception_in_hook_removes_all_hooks(tiny_llada):
    before = _params(tiny_llada)

    def boom(act, ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with tiny_llada.hooks({"blocks.0.hook_resid_pre": lambda a, c: None, "blocks.1.mlp.hook_pre": boom}):
            tiny_llada(_ids(tiny_llada))
    assert _no_hooks_left(tiny_llada)
    assert all(torch.equal(before[k], v) for k, v in _params(tiny_llada).items())
    assert tiny_llada._n_hooks == 0


def test_padding_and_prompt_length_in_context(tiny_llada):
    ids = _ids(tiny_llada, b=2, p=6)
    attn = torch.ones_like(ids)
    attn[0, :2] = 0
    seen = []
    with tiny_llada.hooks({"hook_embed": lambda a, ctx: seen.append(ctx)}):
        tiny_llada(ids, attention_mask=attn, prompt_length=4)
    ctx = seen[0]
    assert ctx.padding[0, :2].all() and not ctx.padding[1].any()
    assert ctx.response_mask[:, 4:].all() and not ctx.response_mask[:, :4].any()
    assert not ctx.prompt_mask[0, :2].any() and ctx.prompt_mask[0, 2:4].all()


def test_dream_predicts_masked_is_shifted(tiny_dream):
    ids = _ids(tiny_dream, b=1, p=6)
    ids[0, 4] = tiny_dream.mask_id
    seen = []
    with tiny_dream.hooks({"hook_embed": lambda a, ctx: seen.append(ctx)}):
        tiny_dream(ids)
    ctx = seen[0]
    assert ctx.masked[0].tolist() == [False] * 4 + [True, False]
    assert ctx.predicts_masked[0].tolist() == [False] * 3 + [True, False, False]


def test_augmented_rows_do_not_change_main_logits(tiny_llada):
    ids = _ids(tiny_llada, b=2, p=6)
    base = tiny_llada(ids)
    extra = _ids(tiny_llada, b=1, p=6, seed=5)
    rows = []
    with tiny_llada.augment_batch(lambda i, m, p, info: (extra, None)):
        with tiny_llada.hooks({"hook_embed": lambda a, ctx: rows.append((a.shape[0], ctx.main_rows))}):
            out = tiny_llada(ids)
    assert rows == [(3, 2)]
    torch.testing.assert_close(out, base, atol=1e-5, rtol=1e-5)
