"""Activation patching (analyses.patching): equal to TransformerLens 4.3's own `transformer_lens.patching` on the
same model and input (goldens: scripts/make_patching_goldens.py), equal to a hand-written hook patch, and across
denoising steps equal to a patch of the sampler's own step state (replayed canvases are the sampler's)."""

import json

import pytest
import torch
from safetensors import safe_open

from analyses import patching as P
from analyses.replayed import ReplayedRun
from mdm_lens.testing import tiny_model

# Both sides run the same float32 forward and copy activations exactly; the tolerance only absorbs a different
# summation order of the batch mean in the metric (|values| ~ 1).
ATOL = 1e-6
TOKENS = (11, 23)


def metric(logits):
    return (logits[:, -1, TOKENS[0]] - logits[:, -1, TOKENS[1]]).mean()


@pytest.fixture(scope="module")
def golden():
    with safe_open("tests/fixtures/patching_goldens.safetensors", "pt") as f:
        return json.loads(f.metadata()["meta"]), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)


@pytest.fixture(scope="module")
def model():
    return tiny_model("llada", seed=0).eval()


def test_equals_transformer_lens(model, golden):
    meta, g = golden
    assert meta["transformer_lens"] == "4.3.0"
    _, cache = model.run_with_cache(g["clean"])
    assert (model(g["corrupted"]) - g["logits.corrupted"]).abs().max() < ATOL
    for name in meta["functions"]:
        ours = getattr(P, name)(model, g["corrupted"], cache, metric, progress=False)
        assert ours.shape == g[name].shape, name
        torch.testing.assert_close(ours, g[name], atol=ATOL, rtol=0, msg=name)
    assert g["get_act_patch_resid_pre"].std() > 0.005  # the corruption matters: the comparison can fail


def _hand(model, corrupted, site, clean_act, where, metric=metric, **kw):
    def hook(act, ctx):
        act = act.clone()
        act[where] = clean_act[where]
        return act

    with torch.no_grad(), model.hooks({site: hook}):
        return float(metric(model(corrupted, **kw)))


def test_each_function_equals_a_hand_written_hook(model, golden):
    _, g = golden
    clean, corr = g["clean"], g["corrupted"]
    _, cache = model.run_with_cache(clean)
    for fn, role in [
        (P.get_act_patch_resid_pre, "resid_pre"),
        (P.get_act_patch_resid_mid, "resid_mid"),
        (P.get_act_patch_attn_out, "attn_out"),
        (P.get_act_patch_mlp_out, "mlp_out"),
    ]:
        res = fn(model, corr, cache, metric, progress=False)
        for layer, pos in [(0, 1), (1, 2), (1, 9)]:
            site = f"blocks.{layer}.hook_{role}"
            assert res[layer, pos] == pytest.approx(_hand(model, corr, site, cache[site], (slice(None), pos)), abs=1e-6)
    heads = P.get_act_patch_attn_head_out_all_pos(model, corr, cache, metric, progress=False)
    by_pos = P.get_act_patch_attn_head_out_by_pos(model, corr, cache, metric, progress=False)
    z = "blocks.1.attn.hook_z"
    assert heads[1, 2] == pytest.approx(_hand(model, corr, z, cache[z], (slice(None), slice(None), 2)), abs=1e-6)
    assert by_pos[1, 2, 3] == pytest.approx(_hand(model, corr, z, cache[z], (slice(None), 2, 3)), abs=1e-6)


def test_scope_patches_only_in_scope_positions(model, golden):
    _, g = golden
    clean, corr = g["clean"], g["corrupted"]
    _, cache = model.run_with_cache(clean)
    full = P.get_act_patch_resid_pre(model, corr, cache, metric, progress=False)
    masked = P.get_act_patch_resid_pre(model, corr, cache, metric, scope="masked", progress=False)
    assert torch.isnan(masked[:, :6]).all() and torch.equal(masked[:, 6:], full[:, 6:])
    with pytest.raises(ValueError, match="unknown token scope 'maskd'"):
        P.get_act_patch_resid_pre(model, corr, cache, metric, scope="maskd", progress=False)


def test_steps_patch_the_samplers_own_step_state():
    """Patching at step s of a replayed run equals patching the sampler's step-s forward by hand, where the clean
    activation comes from `cache_steps` during the clean generation itself."""
    model = tiny_model("llada", seed=0).eval()
    kw = dict(gen_length=6, steps=3, block_length=6)
    clean_p, corr_p = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[5, 90, 91, 8]])
    site = "blocks.1.hook_resid_pre"
    with model.cache_steps([site]) as steps_cache:
        out = model.generate(clean_p, seed=0, **kw)
    run = ReplayedRun.of(model, out)
    res = P.get_act_patch_resid_pre(model, corr_p, run, metric, steps="all", progress=False)
    assert res.shape == (3, 2, 10)
    one = P.get_act_patch_resid_pre(model, corr_p, run, metric, steps=1, progress=False)
    torch.testing.assert_close(one, res[1], atol=0, rtol=0)
    for s in range(3):
        assert torch.equal(run.canvas(s), _sampler_input(model, clean_p, kw, s))
        clean_act = steps_cache[site, s]
        canvas = run.canvas(s, corr_p)
        got = _hand(model, canvas, site, clean_act, (slice(None), 2), prompt_length=4)
        assert res[s, 1, 2] == pytest.approx(got, abs=1e-6)
    with pytest.raises(ValueError, match="steps 0..2"):
        P.get_act_patch_resid_pre(model, corr_p, run, metric, steps=[3], progress=False)
    with pytest.raises(TypeError, match="ReplayedRun"):
        P.get_act_patch_resid_pre(model, corr_p, {}, metric, steps=1, progress=False)


def _sampler_input(model, prompt, kw, step):
    seen = {}

    def fn(act, ctx):
        seen[ctx.step] = ctx.input_ids.detach().clone()

    with model.hooks({"blocks.0.hook_resid_pre": fn}):
        model.generate(prompt, seed=0, **kw)
    return seen[step]


def test_plot(tmp_path, model, golden):
    _, g = golden
    path = P.plot_patching(g["get_act_patch_block_every"], str(tmp_path / "p.png"), steps=[0, 1, 2])
    assert (tmp_path / "p.png").stat().st_size > 1000 and path.endswith("p.png")
