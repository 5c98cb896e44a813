"""Collection: planted differences show up where planted; pooling/scope semantics; errors; save/load."""

import pytest
import torch

from mdm_lens import get_act_name
from mdm_lens.collect import Activations, collect, collect_by_step, collect_contrastive

PROMPTS = ["hello world", "the cat is good", "a dog and a cat", "write a story"]


def test_planted_shift_appears_at_its_layer_and_after(tiny_llada):
    sites = [get_act_name("resid_post", l) for l in range(2)] + [get_act_name("resid_pre", 0)]
    src = collect(tiny_llada, PROMPTS, sites, gen_length=8, progress=False)
    shift = torch.zeros(64)
    shift[5] = 3.0
    with tiny_llada.hooks({"blocks.1.attn.hook_out": lambda a, ctx: a + shift}):
        tgt = collect(tiny_llada, PROMPTS, sites, gen_length=8, progress=False)
    d0 = (tgt["blocks.0.hook_resid_post"] - src["blocks.0.hook_resid_post"]).abs().max()
    d1 = tgt["blocks.1.hook_resid_post"].mean(0) - src["blocks.1.hook_resid_post"].mean(0)
    assert d0 == 0
    assert d1[5] > 2.0 and d1.abs().argmax() == 5


def test_pooling_and_scope(tiny_llada):
    site = "blocks.1.mlp.hook_out"
    ids = tiny_llada.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full = torch.tensor([list(ids) + [tiny_llada.mask_id] * 8])
    _, cache = tiny_llada.run_with_cache(full, [site], prompt_length=len(ids))
    act = cache[site][0].double()
    mean_full = collect(tiny_llada, PROMPTS[:1], [site], gen_length=8, progress=False)[site][0]
    torch.testing.assert_close(mean_full, act.mean(0))
    resp = collect(tiny_llada, PROMPTS[:1], [site], scope="response", gen_length=8, progress=False)[site][0]
    torch.testing.assert_close(resp, act[len(ids) :].mean(0))
    last = collect(tiny_llada, PROMPTS[:1], [site], pooling="last", scope="prompt", gen_length=8, progress=False)[site][
        0
    ]
    torch.testing.assert_close(last, act[len(ids) - 1])
    rows = collect(tiny_llada, PROMPTS[:2], [site], pooling="none", scope="response", gen_length=8, progress=False)
    assert rows[site].shape == (16, 64) and rows[site].dtype == torch.float64


def test_batched_equals_unbatched_with_padding(tiny_llada):
    site = "blocks.0.mlp.hook_pre"
    a = collect(tiny_llada, PROMPTS, [site], gen_length=8, batch_size=4, progress=False)[site]
    b = collect(tiny_llada, PROMPTS, [site], gen_length=8, batch_size=1, progress=False)[site]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_collect_at_denoising_steps(tiny_llada):
    site = "blocks.0.hook_resid_post"
    acts = collect(
        tiny_llada, PROMPTS[:2], [site], at_steps=[0, 2], gen_length=4, progress=False, block_length=4, steps=4
    )
    with tiny_llada.cache_steps([site], steps=[0, 2], reduce="mean", scope="all") as cache:
        tiny_llada.generate(PROMPTS[:2], gen_length=4, block_length=4, steps=4)
    expected = torch.cat([cache[site, 0], cache[site, 2]]).double()  # rows: step 0 prompts, then step 2
    torch.testing.assert_close(acts[site], expected, atol=1e-5, rtol=1e-5)


def test_collect_by_step_splits_one_generation_per_step(tiny_llada):
    site = "blocks.0.hook_resid_post"
    opts = dict(gen_length=4, block_length=4, steps=4, progress=False, batch_size=1)
    by_step = collect_by_step(tiny_llada, PROMPTS[:3], [site], [2, 0], **opts)
    stacked = collect(tiny_llada, PROMPTS[:3], [site], at_steps=[0, 2], **opts)  # batch 1: rows alternate steps
    assert list(by_step) == [0, 2]
    torch.testing.assert_close(by_step[0][site], stacked[site][0::2], atol=0, rtol=0)
    torch.testing.assert_close(by_step[2][site], stacked[site][1::2], atol=0, rtol=0)
    # t = share of the response still masked: all of it at step 0, half after two of four one-token steps
    assert by_step[0].meta["t"] == 1.0 and by_step[2].meta["t"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"steps \[7\] never ran.*0\.\.3"):
        collect_by_step(tiny_llada, PROMPTS[:1], [site], [7], **opts)
    with pytest.raises(ValueError, match=r"steps \[9\] never ran"):
        collect(tiny_llada, PROMPTS[:1], [site], at_steps=[9], **opts)
    with pytest.raises(ValueError, match="at_steps is empty"):
        collect_by_step(tiny_llada, PROMPTS[:1], [site], [], **opts)


def test_errors_and_roundtrip(tiny_llada, tmp_path):
    with pytest.raises(ValueError, match="empty prompt set"):
        collect(tiny_llada, [], ["hook_embed"], progress=False)
    with pytest.raises(KeyError, match="closest"):
        collect(tiny_llada, PROMPTS, ["blocks.9.hook_resid_post"], progress=False)
    with pytest.raises(ValueError, match="unknown pooling"):
        collect(tiny_llada, PROMPTS, ["hook_embed"], pooling="max", progress=False)
    src, tgt = collect_contrastive(tiny_llada, PROMPTS, PROMPTS[::-1], ["hook_embed"], gen_length=4, progress=False)
    src.save(tmp_path / "a.safetensors")
    back = Activations.load(tmp_path / "a.safetensors")
    assert torch.equal(back["hook_embed"], src["hook_embed"]) and back.meta["gen_length"] == 4
