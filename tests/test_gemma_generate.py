"""DiffusionGemma generates through HookedMDM by driving transformers' own `generate`: no-op hooks leave the tokens
equal to `generate`'s for the same seed, hooks see the step context (step, canvas = block, noise = still to decide)
under the same site names, and edits take effect."""

import pytest
import torch

from mdm_lens import HookedMDM
from mdm_lens.testing import tiny_config

SETTINGS = dict(max_new_tokens=16, max_denoising_steps=4)  # 2 canvases of 8 (tiny canvas_length), 4 steps each


@pytest.fixture(scope="module")
def gemma():
    return HookedMDM.from_config(tiny_config("diffusion_gemma"), seed=0).eval()


def _transformers_generate(model, ids, seed):
    torch.manual_seed(seed)
    return model.model.generate(ids, **SETTINGS).sequences


def test_noop_hooks_equal_transformers_generate_and_hooks_see_steps(gemma):
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    ref = _transformers_generate(gemma, ids, seed=3)
    plain = gemma.generate(ids, seed=3, **SETTINGS)
    seen = []

    def record(act, ctx):
        seen.append(
            (
                ctx.site,
                ctx.step,
                ctx.block,
                ctx.num_steps,
                ctx.num_blocks,
                tuple(act.shape),
                ctx.t,
                ctx.masked.clone(),
                ctx.input_ids.clone(),
            )
        )

    names = ["hook_embed", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post", "hook_logits"]
    with gemma.hooks({n: record for n in names}):
        hooked = gemma.generate(ids, seed=3, **SETTINGS)
    assert torch.equal(plain.sequences, ref) and torch.equal(hooked.sequences, ref)
    assert hooked.decode_step is None and torch.equal(hooked.tokens, ref[:, 4:])
    assert gemma.step_info is None and "forward" not in gemma.model.__dict__  # the forward slot is restored
    resid = [s for s in seen if s[0] == "blocks.1.hook_resid_post"]
    assert [(s[1], s[2]) for s in resid] == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1), (7, 1)]
    assert {(s[3], s[4]) for s in resid} == {(8, 2)}
    assert {s[5] for s in resid} == {(2, 8, 64)}  # the canvas positions only
    for s in resid:
        noise = s[7]
        assert s[6] == pytest.approx(float(noise.float().mean()))  # t = fraction still noise
        if s[1] % 4 == 0:
            assert noise.all()  # a canvas starts as pure noise
        else:
            assert (~noise).any(1).all()  # the entropy bound accepts >= 1
    # the canvas a step reads is the previous step's: positions it accepted keep a token, the rest are re-drawn
    for a, b in zip(resid, resid[1:]):
        if b[2] == a[2]:
            assert not torch.equal(a[8], b[8]) or b[7].sum() == 0
    assert {s[0] for s in seen} == set(names)


def test_hooks_edit_the_generation_and_step_cache_works(gemma):
    ids = torch.tensor([[5, 6, 7, 8]])
    ref = gemma.generate(ids, seed=1, **SETTINGS).sequences
    with gemma.hooks({"blocks.1.hook_resid_post": lambda act, ctx: act * 0 if ctx.block == 1 else None}):
        edited = gemma.generate(ids, seed=1, **SETTINGS).sequences
    assert torch.equal(edited[:, :12], ref[:, :12])  # canvas 0 untouched
    assert not torch.equal(edited[:, 12:], ref[:, 12:])  # canvas 1 changed
    with gemma.cache_steps(["blocks.0.hook_resid_post"], steps=[0, 5]) as cache:
        again = gemma.generate(ids, seed=1, **SETTINGS).sequences
    assert torch.equal(again, ref) and cache.steps == [0, 5]
    assert cache["blocks.0.hook_resid_post", 5].shape == (1, 8, 64)


def test_bad_options_are_refused(gemma):
    ids = torch.tensor([[5, 6, 7, 8]])
    with pytest.raises(TypeError, match="max_denoising_steps"):
        gemma.generate(ids, seed=0, gen_length=8)
    with pytest.raises(ValueError, match="no mask token"):
        gemma.generate(ids, seed=0, return_history=True, **SETTINGS)
