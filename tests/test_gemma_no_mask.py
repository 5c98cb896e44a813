"""DiffusionGemma has no mask token (uniform-noise canvas): every API defined by a mask raises NoMaskTokenError
naming the family, instead of treating "masked" as empty; what does not need a mask keeps working, and inside
`generate` the canvas context still defines `masked` (positions holding fresh noise)."""

from __future__ import annotations

import pytest
import torch

from analyses.effects import step_effects
from analyses.logit_lens import logit_lens
from analyses.patching import get_act_patch_resid_pre
from analyses.replayed import ReplayedRun
from interventions.reference import ReferenceAlignment
from mdm_lens import HookedMDM
from mdm_lens.likelihood import log_likelihoods
from mdm_lens.no_mask import NoMaskTokenError, has_mask_token
from mdm_lens.testing import tiny_config

IDS = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]])  # 4 prompt + the tiny canvas of 8
NAMED = r"needs a mask token, but diffusion_gemma has none"


@pytest.fixture(scope="module")
def gemma():
    return HookedMDM.from_config(tiny_config("diffusion_gemma"), seed=0).eval()


def _read(attr: str, seen: list):
    def hook(act, ctx):
        seen.append(getattr(ctx, attr))

    return hook


def test_family_has_no_mask_token(gemma):
    assert not has_mask_token(gemma) and gemma.mask_id == -1
    assert has_mask_token(HookedMDM.from_config(tiny_config("llada")))


@pytest.mark.parametrize("attr", ["masked", "predicts_masked", "t"])
def test_plain_forward_masked_scope_and_t_raise(gemma, attr):
    site = gemma.site_names(["resid_post"])[0]
    seen: list = []
    with pytest.raises(NoMaskTokenError, match=NAMED), gemma.hooks({site: _read(attr, seen)}):
        gemma(IDS, prompt_length=4)
    assert seen == [] and not gemma.hooks_attached  # nothing read, no hook leaked


def test_scopes_that_need_no_mask_still_work(gemma):
    site = gemma.site_names(["resid_post"])[0]
    seen: list = []

    def hook(act, ctx):
        seen.append((ctx.scope_mask("response").sum().item(), ctx.scope_mask("prompt").sum().item(), repr(ctx)))

    with gemma.hooks({site: hook}):
        gemma(IDS, prompt_length=4)
    (resp, prompt, text) = seen[0]
    assert (resp, prompt) == (8, 4)  # the canvas (last 8 of 12 ids) is the response
    assert "undefined (no mask token)" in text  # repr never raises


def test_masked_batch_and_likelihood_raise(gemma):
    with pytest.raises(NoMaskTokenError, match=r"masked_batch.*" + NAMED):
        gemma.masked_batch([[5, 6, 7]], gen_length=8, chat=False)
    with pytest.raises(NoMaskTokenError, match=r"likelihood.*diffusion_gemma has none"):
        log_likelihoods(gemma, [([5, 6, 7], [8, 9])], mc_num=2, batch_size=2, chat=False)


def test_patching_by_masked_positions_raises(gemma):
    _, cache = gemma.run_with_cache(IDS)
    with pytest.raises(NoMaskTokenError, match=NAMED):
        get_act_patch_resid_pre(gemma, IDS, cache, lambda lg: lg.sum(), scope="masked", prompt_length=4, progress=False)


def test_schedule_based_analyses_raise(gemma):
    with pytest.raises(NoMaskTokenError, match=r"step_effects.*" + NAMED):
        step_effects(gemma, [[5, 6, 7]], None)
    with pytest.raises(NoMaskTokenError, match=r"logit_lens.*" + NAMED):
        logit_lens(gemma, [[5, 6, 7]], chat=False)
    with pytest.raises(NoMaskTokenError, match=r"ReplayedRun.*" + NAMED):
        ReplayedRun.of(gemma, None)
    align = ReferenceAlignment([5, 6], gemma.site_names(["resid_post"])[:1])
    with pytest.raises(NoMaskTokenError, match=r"ReferenceAlignment.*" + NAMED):
        with align.attach(gemma):
            pass
    assert not gemma.hooks_attached


def test_generate_keeps_its_noise_defined_masked_scope(gemma):
    """Inside generate the canvas context defines `masked` (fresh noise) and t: nothing raises."""
    site = gemma.site_names(["resid_post"])[0]
    ts: list = []
    with gemma.hooks({site: _read("t", ts)}):
        gemma.generate(IDS[:, :4], seed=0, max_new_tokens=8, max_denoising_steps=2)
    assert len(ts) == 2 and ts[0] == 1.0 and all(0.0 <= t <= 1.0 for t in ts)
