"""LLaDA2.1's block-diffusion sampler with token editing against the original `generate` of
`modeling_llada21_moe.py` (goldens: scripts/make_llada2_sampler_goldens.py --ref21, cases CASES21 in
tests/llada2_sampler_cases.py, same weights as LLaDA2.0's): token ids exact."""

from __future__ import annotations

import pytest
import torch
from llada2_sampler_cases import CASES21, MASK, load_golden, native_model
from test_llada2_sampling import Replay

from mdm_lens.sampling.llada2 import reference_answer
from mdm_lens.sampling.llada21 import llada21_generate


@pytest.fixture(scope="module")
def golden():
    return load_golden("cases21")


def _run(model, case: dict, **extra) -> torch.Tensor:
    settings = {k: v for k, v in case["settings"].items() if k not in ("steps", "minimal_topk")}  # unused by 2.1
    torch.manual_seed(case["seed"])
    seqs = llada21_generate(model, torch.tensor(case["prompt"]), **settings, **extra)
    return reference_answer(seqs, len(case["prompt"][0]), settings["eos_id"])[0]


@pytest.mark.parametrize("i", range(len(CASES21)), ids=[c["name"] for c in CASES21])
def test_editing_sampler_replays_the_reference_exactly(golden, i):
    tensors, meta = golden
    case = CASES21[i]
    replay = Replay(tensors[f"c21_{i}.inputs"], tensors[f"c21_{i}.logits"], case["settings"]["block_length"])
    stats: dict = {}
    assert torch.equal(_run(replay, case, stats=stats), tensors[f"c21_{i}.answer"])
    assert replay.n == tensors[f"c21_{i}.inputs"].shape[0] == stats["forwards"]
    assert meta[i]["ours_equal"] and (meta[i]["margin"] or case["dtype"] == "bfloat16")


def test_native_model_generates_the_reference_tokens_with_edits(golden):
    """Float32 on the native model (the LLaDA2.1 network is LLaDA2.0's); the run rewrites decoded tokens."""
    tensors, _ = golden
    model = native_model(tensors)
    i = next(j for j, c in enumerate(CASES21) if c["name"] == "greedy_transfer2_post3")
    case = CASES21[i]
    settings = {k: v for k, v in case["settings"].items() if k not in ("steps", "minimal_topk")}
    seen: list = []
    with model.hooks({"blocks.1.hook_resid_post": lambda act, ctx: seen.append(ctx.info)}):
        seqs, history = llada21_generate(model, torch.tensor(case["prompt"]), return_history=True, **settings)
    assert torch.equal(reference_answer(seqs, 8, settings["eos_id"])[0], tensors[f"c21_{i}.answer"])
    h = torch.stack(history)[:, 0]
    edited = (h[:-1] != MASK) & (h[1:] != MASK) & (h[:-1] != h[1:])
    assert bool(edited.any())  # editing is exercised, not only unmasking
    assert {s.sampler for s in seen} == {"llada21"} and seen[0].block_span == (8, 16) and len(seen) == len(history)


def test_bad_editing_options_are_refused():
    with pytest.raises(ValueError, match="num_to_transfer=0 must be an integer >= 1"):
        llada21_generate(lambda *a, **k: None, torch.tensor([[5, 6]]), gen_length=8, num_to_transfer=0, mask_id=MASK)
    with pytest.raises(ValueError, match=r"editing_threshold=2 must be a number in \[0, 1\]"):
        llada21_generate(lambda *a, **k: None, torch.tensor([[5, 6]]), gen_length=8, editing_threshold=2, mask_id=MASK)


def test_kv_cached_editing_equals_uncached(golden):
    model = native_model(golden[0])
    case = next(c for c in CASES21 if c["name"] == "greedy_transfer2_post3")
    settings = {k: v for k, v in case["settings"].items() if k not in ("steps", "minimal_topk")}
    prompt = torch.tensor(case["prompt"])
    plain, cached = {}, {}
    a = llada21_generate(model, prompt, stats=plain, **settings)
    b = llada21_generate(model, prompt, stats=cached, kv_cache=True, **settings)
    assert torch.equal(a, b) and plain["forwards"] == cached["forwards"] and cached["columns"] < plain["columns"]
