"""Head and neuron ablation (interventions.ablation): each mode writes what it says at the chosen heads / neurons
and steps only, composes with other plans, and leaves the model as it was."""

import pytest
import torch

from interventions import Plan
from interventions.ablation import head_ablation, neuron_ablation
from mdm_lens.testing import tiny_model

KW = dict(gen_length=6, steps=3, block_length=6)


@pytest.fixture(scope="module")
def model():
    return tiny_model("llada", seed=0).eval()


def _z_by_step(model, plan, site="blocks.1.attn.hook_z"):
    prompt = torch.tensor([[5, 6, 7, 8]])
    seen = {}

    def keep(act, ctx):
        seen[ctx.step] = act.detach().clone()

    with model.hooks({site: keep}) if plan is None else model.steer(plan + Plan({site: _Keep(keep)})):
        model.generate(prompt, seed=0, **KW)
    return seen


class _Keep:
    """A recording intervention that runs after the ablation at the same site (plan order)."""

    d = None

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, act, ctx):
        self.fn(act, ctx)
        return act

    def strength(self, lam):
        return self


def test_zero_head_at_one_step_only(model):
    plan = head_ablation(model, 1, [2], "zero", steps=[1, 2])
    plain = _z_by_step(model, None)
    seen = _z_by_step(model, plan)
    # the hook registered after the plan sees the ablated tensor: head 2 zero at step 1, untouched at step 0
    assert torch.equal(seen[1][..., 2, :], torch.zeros_like(seen[1][..., 2, :]))
    assert torch.equal(seen[1][..., [0, 1, 3], :], plain[1][..., [0, 1, 3], :])
    assert torch.equal(seen[0], plain[0])


def test_mean_and_resample_use_the_reference(model):
    ref = model.masked_batch(["hello world", "the cat"], gen_length=6)
    _, cache = model.run_with_cache(
        ref.input_ids, names_filter=["blocks.0.mlp.hook_post"], attention_mask=ref.attention_mask
    )
    mean = cache["blocks.0.mlp.hook_post"][..., [3, 7]].float().mean((0, 1))
    plan = neuron_ablation(model, 0, [3, 7], "mean", reference=ref)
    site = "blocks.0.mlp.hook_post"
    seen = {}
    with model.steer(plan), model.hooks({site: lambda a, c: seen.setdefault("a", a.detach().clone())}):
        model(ref.input_ids, attention_mask=ref.attention_mask)
    torch.testing.assert_close(seen["a"][..., [3, 7]], mean.expand(2, ref.input_ids.shape[1], 2))
    res = neuron_ablation(model, 0, [3], "resample", reference=ref, seed=1)
    seen.clear()
    with model.steer(res), model.hooks({site: lambda a, c: seen.setdefault("a", a.detach().clone())}):
        model(ref.input_ids[:1])
    ref_rows = cache[site][..., 3]
    assert any(torch.equal(seen["a"][0, :, 3], ref_rows[r]) for r in range(2))


def test_composes_and_restores(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = head_ablation(model, 0, [0, 1]) + neuron_ablation(model, 1, [5], steps=[0, 1])
    assert isinstance(p, Plan) and len(p.sites) == 2
    plain = model.generate(torch.tensor([[5, 6, 7, 8]]), seed=0, **KW)
    model.generate(torch.tensor([[5, 6, 7, 8]]), seed=0, plan=p, **KW)
    again = model.generate(torch.tensor([[5, 6, 7, 8]]), seed=0, **KW)
    assert torch.equal(plain.tokens, again.tokens) and not model.hooks_attached
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_errors(model):
    with pytest.raises(ValueError, match="heads \\[9\\] out of range"):
        head_ablation(model, 0, [9])
    with pytest.raises(ValueError, match="needs reference="):
        head_ablation(model, 0, [1], "mean")
    with pytest.raises(ValueError, match="mode='half'"):
        neuron_ablation(model, 0, [1], "half")
