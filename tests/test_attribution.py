"""Attribution patching (analyses.attribution): the gradient term equals autograd by hand; on a model linear in the
patched site it equals activation patching (and EAP-IG equals plain attribution there); a clear error for bad k."""

import pytest
import torch

from analyses import patching as P
from analyses.attribution import agreement, attribution_patch
from mdm_lens.testing import tiny_model


def metric(logits):
    return (logits[:, -1, 11] - logits[:, -1, 23]).mean()


@pytest.fixture(scope="module")
def setup():
    model = tiny_model("llada", seed=0).eval()
    g = torch.Generator().manual_seed(7)
    clean = torch.randint(0, 250, (2, 8), generator=g)
    clean[:, -3:] = model.mask_id
    corr = clean.clone()
    corr[:, 1:3] = torch.randint(0, 250, (2, 2), generator=g)
    return model, clean, corr


def test_equals_autograd_by_hand(setup):
    model, clean, corr = setup
    site = "blocks.1.hook_attn_out"
    _, cc = model.run_with_cache(clean, names_filter=[site])
    _, xc = model.run_with_cache(corr, names_filter=[site])
    held = {}

    def hold(act, ctx):
        act.retain_grad()
        held["a"] = act

    with model.hooks({site: hold}):
        metric(model(corr)).backward()
    model.zero_grad(set_to_none=True)
    expect = (held["a"].grad * (cc[site] - xc[site])).sum((0, 2))
    got = attribution_patch(model, clean, corr, metric, roles=["attn_out"])["attn_out"][1]
    torch.testing.assert_close(got, expect, atol=1e-6, rtol=1e-5)  # float64 vs float32 sums


def test_equals_activation_patching_where_linear(setup):
    """Freezing the final norm's scale (a constant hook) makes the logits linear in the last block's MLP output:
    there the first-order estimate is exact, for plain attribution and for EAP-IG."""
    model, clean, corr = setup
    last = model.n_layers - 1
    _, sc = model.run_with_cache(corr, names_filter=["ln_final.hook_scale"])
    frozen = sc["ln_final.hook_scale"]
    freeze = {"ln_final.hook_scale": lambda act, ctx: frozen.clone()}
    with model.hooks(freeze):
        _, cache = model.run_with_cache(clean)
        act = P.get_act_patch_mlp_out(model, corr, cache, metric, progress=False)[last]
        with torch.no_grad():
            base = float(metric(model(corr)))
        ap = attribution_patch(model, clean, corr, metric, roles=["mlp_out"])["mlp_out"][last]
        ig = attribution_patch(model, clean, corr, metric, roles=["mlp_out"], method="ig", k=3)["mlp_out"][last]
    assert (act - base).abs().max() > 1e-3  # patching moves the metric: the check can fail
    torch.testing.assert_close(ap, act - base, atol=2e-6, rtol=0)
    torch.testing.assert_close(ig, ap, atol=2e-6, rtol=0)
    # without the freeze the model is not linear there, and the estimate is only close
    ap_nl = attribution_patch(model, clean, corr, metric, roles=["resid_pre"])["resid_pre"]
    _, cache = model.run_with_cache(clean)
    act_nl = P.get_act_patch_resid_pre(model, corr, cache, metric, progress=False) - float(metric(model(corr)))
    assert agreement(ap_nl, act_nl)["pearson"] > 0.5


def test_errors(setup):
    model, clean, corr = setup
    with pytest.raises(ValueError, match="k=0"):
        attribution_patch(model, clean, corr, metric, method="ig", k=0)
    with pytest.raises(ValueError, match="roles \\['hook_x'\\]"):
        attribution_patch(model, clean, corr, metric, roles=["hook_x"])
    with pytest.raises(TypeError, match="0-dim tensor"):
        attribution_patch(model, clean, corr, lambda lg: 1.0)
