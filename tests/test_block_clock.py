"""The step clock under block diffusion (LLaDA2), and the KV-cached block path: token-equal to the uncached
sampler, with hooks that see only the computed columns."""

from __future__ import annotations

import pytest
import torch
from llada2_sampler_cases import CASES, EOS, MASK, load_golden, native_model

from mdm_lens.sampling.llada2 import llada2_generate
from mdm_lens.sampling.llada2_cached import llada2_generate_cached

SITE = "blocks.1.hook_resid_post"
P5 = torch.tensor([[5, 9, 17, 33, 40]])


@pytest.fixture(scope="module")
def model():
    return native_model(load_golden()[0])


def _record(seen: list):
    def fn(act, ctx):
        seen.append(
            {
                "info": ctx.info,
                "width": act.shape[1],
                "computed": ctx.computed,
                "cached": ctx.cached,
                "t_block": ctx.t_block,
                "t": ctx.t,
                "masked": ctx.scope_mask("masked").clone(),
                "ids": ctx.input_ids.clone(),
            }
        )

    return fn


def test_block_clock_announces_blocks_spans_and_t_block(model):
    seen: list = []
    kw = {"gen_length": 16, "block_length": 8, "steps": 4, "threshold": 1.0, "eos_id": -1, "mask_id": MASK}
    with model.hooks({SITE: _record(seen)}):
        out = llada2_generate(model, P5, **kw)
    infos = [s["info"] for s in seen]
    # 5 + 16 columns -> 3 blocks of 8, the prompt's tail in block 0; the schedule spreads the 8 columns of a block
    # over its 4 steps (2 each), so block 0 (3 masks) ends after 2 steps; num_steps is the bound, 3 x 4
    firsts = [0, 2, 6]
    assert [i.step for i in infos] == list(range(10)) and {i.num_steps for i in infos} == {12}
    assert [i.block for i in infos] == [0] * 2 + [1] * 4 + [2] * 4 and {i.num_blocks for i in infos} == {3}
    assert [infos[j].block_span for j in firsts] == [(0, 8), (8, 16), (16, 24)]
    assert [i.block_step for i in infos] == [0, 1] + [0, 1, 2, 3] * 2 and {i.block_num_steps for i in infos} == {4}
    assert all(i.sampler == "llada2" and i.prompt_length == 5 and i.gen_length == 16 for i in infos)
    # the uncached forward feeds columns [0, end of block): all computed, nothing cached
    assert [seen[j]["width"] for j in firsts] == [8, 16, 24] and all(s["cached"] == [] for s in seen)
    assert all(s["computed"] == (0, s["width"]) for s in seen)
    # t_block: the fraction of the block's columns still masked when the step starts
    assert [s["t_block"] for s in seen[:6]] == pytest.approx([3 / 8, 1 / 8, 1.0, 6 / 8, 4 / 8, 2 / 8])
    for s in seen:  # token scopes mean what they mean for LLaDA: masked = response columns holding the mask id
        cols = torch.arange(s["width"])
        assert torch.equal(s["masked"][0], (s["ids"][0] == MASK) & (cols >= 5))
    assert seen[0]["t"] == pytest.approx(3 / 3) and model.step_info is None
    assert not bool((out == MASK).any())


# float32 cases that cover greedy and sampled threshold hits, a block-aligned prompt, the minimal_topk cap, sampling and the EOS early
# stop (the others repeat these paths with more forwards: kept out for the suite's time)
CACHE_NAMES = (
    "aligned_prompt_steps4",
    "minimal_topk_caps",
    "sample_topk_topp",
    "eos_early_stop",
)
CACHE_CASES = [c for c in CASES if c["name"] in CACHE_NAMES]


@pytest.mark.parametrize("case", CACHE_CASES, ids=[c["name"] for c in CACHE_CASES])
def test_cached_path_equals_uncached_with_hooks(model, case):
    """Float32, seeded: the same tokens and the same number of forwards, with a hook running on both."""
    runs = []
    for fn in (llada2_generate, llada2_generate_cached):
        seen: list = []
        stats: dict = {}
        torch.manual_seed(case["seed"])
        with model.hooks({SITE: _record(seen)}):
            seqs = fn(model, torch.tensor(case["prompt"]), **case["settings"], stats=stats)
        runs.append((seqs, stats, seen))
    (ref, ref_stats, _), (got, stats, seen) = runs
    assert torch.equal(got, ref)
    assert stats["forwards"] == ref_stats["forwards"] == len(seen)
    assert stats["columns"] < ref_stats["columns"]  # what the cache saves
    for s in seen:  # hooks see exactly the computed columns; the cached ones are the prefix before them
        lo, hi = s["computed"]
        assert s["width"] == hi - lo and s["info"].computed == (lo, hi) and hi == s["info"].block_span[1]
        assert s["cached"] == ([(0, lo)] if lo > 0 else [])


def test_cached_forwards_compute_finished_block_then_block_alone(model):
    seen: list = []
    kw = {"gen_length": 16, "block_length": 8, "steps": 2, "threshold": 1.0, "eos_id": EOS, "mask_id": MASK}
    with model.hooks({SITE: _record(seen)}):
        llada2_generate_cached(model, torch.tensor([[11, 4, 60, 23, 7, 90, 31, 2, 8]]), **kw)
    # 9 prompt columns: block 0 is all prompt (never denoised); block 1 starts at 8
    spans = [s["computed"] for s in seen]
    assert spans[:2] == [(0, 16), (8, 16)] and spans[2:4] == [(8, 24), (16, 24)]


def test_fast_sampler_routes_to_the_cached_block_path(model):
    kw = {"gen_length": 16, "block_length": 8, "steps": 8, "threshold": 0.7, "eos_id": EOS}
    ref = model.generate(P5, chat=False, **kw)
    fast = model.generate(P5, chat=False, sampler="fast", **kw)
    assert torch.equal(fast.tokens, ref.tokens)
    assert model.sampler_settings("fast")["cache"] == "prefix"
    with pytest.raises(ValueError, match="cache='bogus'"):
        model.generate(P5, chat=False, sampler="fast", cache="bogus", **kw)
