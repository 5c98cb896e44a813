"""HookedMDM.generate: step context at every forward, per-step caches, prompt handling, errors."""

import pytest
import torch

from mdm_lens import StepCache


def test_context_at_every_step(tiny_llada):
    seen = []

    def rec(act, ctx):
        seen.append(
            (
                ctx.step,
                ctx.num_steps,
                ctx.block,
                ctx.t,
                ctx.masked.clone(),
                ctx.response_mask.clone(),
                ctx.prompt_mask.clone(),
                ctx.padding.clone(),
            )
        )

    with tiny_llada.hooks({"blocks.0.hook_resid_post": rec}):
        out = tiny_llada.generate(["hello world", "the cat is good today"], gen_length=8, steps=8, block_length=4)
    assert [s[0] for s in seen] == list(range(8))
    assert all(s[1] == 8 for s in seen) and [s[2] for s in seen] == [0] * 4 + [1] * 4
    ts = [s[3] for s in seen]
    assert ts[0] == 1.0 and all(a > b for a, b in zip(ts, ts[1:]))  # one token per row per step
    for step, (_, _, _, t, masked, resp, prompt, pad) in enumerate(seen):
        assert masked.shape == (2, out.prompt_length + 8)
        assert not (masked & ~resp).any() and not (prompt & resp).any()
        assert abs(masked.sum().item() / resp.sum().item() - t) < 1e-6
        assert masked.sum().item() == 2 * (8 - step)
    assert seen[0][7][0].any() and not seen[0][7][1].any()  # the shorter prompt is left-padded


def test_generate_returns_text_and_tokens(tiny_llada):
    out = tiny_llada.generate(["hello world"], gen_length=8, steps=8, block_length=8)
    assert out.tokens.shape == (1, 8) and isinstance(out.texts[0], str)
    assert out.sequences.shape[1] == out.prompt_length + 8
    assert not (out.tokens == tiny_llada.mask_id).any()


def test_seeded_generation_is_reproducible(tiny_llada):
    a = tiny_llada.generate(["hello world"], gen_length=8, steps=8, block_length=8, temperature=1.0, seed=3)
    b = tiny_llada.generate(["hello world"], gen_length=8, steps=8, block_length=8, temperature=1.0, seed=3)
    assert torch.equal(a.tokens, b.tokens)


def test_cache_every_step_and_reduced(tiny_llada):
    site = "blocks.1.mlp.hook_out"
    masks = {}
    with (
        tiny_llada.cache_steps([site]) as full,
        tiny_llada.hooks({"hook_embed": lambda a, ctx: masks.__setitem__(ctx.step, ctx.masked.clone())}),
    ):
        tiny_llada.generate(["hello world"], gen_length=8, steps=8, block_length=4)
    with tiny_llada.cache_steps([site], reduce="mean", scope="masked", steps=[0, 3, 7]) as red:
        tiny_llada.generate(["hello world"], gen_length=8, steps=8, block_length=4)
    assert full.steps == list(range(8))
    assert red.steps == [0, 3, 7]
    assert red[site, 3].shape == (1, tiny_llada.site(site).width)
    assert full.stack(site).shape[:2] == (8, 1)
    # the in-hook mean over still-masked positions equals the mean of the full cache at those positions
    for step in (0, 3, 7):
        m = masks[step][0]
        assert m.sum() == 8 - step
        torch.testing.assert_close(red[site, step][0], full[site, step][0][m].mean(0), atol=1e-5, rtol=1e-5)
    assert red.t[0] == 1.0 and red.t[7] == 1 / 8


def test_step_cache_save_load(tiny_llada, tmp_path):
    site = "blocks.0.hook_resid_post"
    with tiny_llada.cache_steps([site], reduce="mean") as cache:
        tiny_llada.generate(["hello"], gen_length=4, steps=4, block_length=4)
    cache.save(tmp_path / "c.safetensors")
    back = StepCache.load(tmp_path / "c.safetensors")
    assert back.steps == cache.steps and back.t == cache.t
    for s in cache.steps:
        assert torch.equal(back[site, s], cache[site, s])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(Exception):
        StepCache.load(tmp_path / "bad.safetensors")


def test_hook_edit_at_one_step_leaves_earlier_tokens(tiny_llada):
    masks, logits = {}, {}
    spy = {
        "hook_embed": lambda a, ctx: masks.__setitem__(ctx.step, ctx.masked[0].clone()),
        "hook_logits": lambda a, ctx: logits.__setitem__(ctx.step, a.clone()),
    }
    with tiny_llada.hooks(spy):
        base = tiny_llada.generate(["hello world"], gen_length=8, steps=8, block_length=8)
    base_logits = dict(logits)
    calls = []

    def kick(act, ctx):
        if ctx.step == 5:
            calls.append(ctx.step)
            return act * 50
        return None

    with tiny_llada.hooks({"blocks.1.hook_resid_post": kick, **spy}):
        edited = tiny_llada.generate(["hello world"], gen_length=8, steps=8, block_length=8)
    assert calls == [5]
    for step in range(5):
        torch.testing.assert_close(logits[step], base_logits[step], rtol=0, atol=0)
    assert not torch.allclose(logits[5], base_logits[5])
    fixed_before = ~masks[5][-8:]  # positions decoded at steps 0..4 never change again
    assert torch.equal(edited.tokens[0][fixed_before], base.tokens[0][fixed_before])


def test_generate_errors(tiny_llada, tiny_dream):
    with pytest.raises(ValueError, match="valid block lengths"):
        tiny_llada.generate(["hi"], gen_length=10, block_length=4, steps=10)
    with pytest.raises(ValueError, match="multiple of 2"):
        tiny_llada.generate(["hi"], gen_length=8, block_length=4, steps=5)
    with pytest.raises(ValueError, match="mask token"):
        tiny_llada.generate(torch.tensor([[5, tiny_llada.mask_id]]), gen_length=4, steps=4, block_length=4)
    with pytest.raises(TypeError, match="unknown sampler option"):
        tiny_llada.generate(["hi"], gen_length=4, steps=4, block_length=4, alg="entropy")
    out = tiny_dream.generate(["hello", "the cat"], max_new_tokens=6, steps=6, alg="entropy", temperature=0.0)
    assert out.tokens.shape == (2, 6)
