"""Fast-dLLM samplers and the native model's KV cache: token-for-token (and logit-for-logit) equal to
NVlabs/Fast-dLLM's own code. Goldens, config, prompts and cases: scripts/make_fast_goldens.py."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mdm_lens.families.llada import build_model
from mdm_lens.sampling import dream_generate_cached, llada_generate_cached

from tie_margin import Jittered

FIXTURE = Path(__file__).parent / "fixtures" / "fast_goldens.safetensors"
GOLDENS = load_file(str(FIXTURE))
with safe_open(str(FIXTURE), "pt") as _f:
    META = {k: json.loads(v) for k, v in _f.metadata().items() if k != "source"}
CONFIG, PROMPTS, CASES = META["config"], META["prompts"], META["cases"]
MASK_ID = CONFIG["mask_token_id"]
# Logits are float32 of magnitude ~1 made on the golden maker's machine; other kernels (AVX-512/AMX, another
# thread count) reorder sums and move them by up to 5.2e-6 (seen). 5e-5 is 10x that and still ~1e-4 of the logit
# scale, so a wrong mask, position or cache column (errors of order 1e-2 and up) cannot pass.
LOGIT_TOL = dict(rtol=0.0, atol=5e-5)


def assert_logits(got: torch.Tensor, golden: torch.Tensor) -> None:
    torch.testing.assert_close(got, golden, **LOGIT_TOL)


@pytest.fixture(scope="module")
def model():
    m = build_model(CONFIG).eval()
    m.load_state_dict({k[2:]: v.float() for k, v in GOLDENS.items() if k.startswith("w.")}, strict=True)
    return m


def _dual_inputs():
    ids = GOLDENS["fwd_ids"]
    start, stop = META["forward_span"]
    replace = torch.zeros_like(ids, dtype=torch.bool)
    replace[:, start:stop] = True
    return ids, start, stop, replace


def test_cached_forwards_equal_fast_dllm_logits(model):
    """Full forward with use_cache, a prefix-cached forward and a dual-cached (replace_position) forward:
    equal to Fast-dLLM's modeling_llada.py within LOGIT_TOL (max error 0.0 on the machine that made the goldens)."""
    ids, start, stop, replace = _dual_inputs()
    with torch.no_grad():
        full = model(ids, use_cache=True)
        assert_logits(full.logits, GOLDENS["fwd_full"])
        assert torch.equal(model(ids), full.logits)  # the uncached path is unchanged (same machine)
        past = [(k[:, :, :start], v[:, :, :start]) for k, v in full.past_key_values]
        assert_logits(model(ids[:, start:], past_key_values=past), GOLDENS["fwd_prefix"])
        dual = model(ids[:, start:stop], past_key_values=full.past_key_values, use_cache=True, replace_position=replace)
        assert_logits(dual.logits, GOLDENS["fwd_dual"])
        assert dual.past_key_values[0][0] is full.past_key_values[0][0]  # updated in place, as the reference


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("i", range(len(CASES)))
def test_sampler_equals_fast_dllm(model, i, cache):
    case = dict(CASES[i])
    prompt = torch.tensor([PROMPTS[case.pop("prompt")]])
    torch.manual_seed(META["seed_base"] + i)
    stats = {}
    out = llada_generate_cached(model, prompt, mask_id=MASK_ID, cache=cache, stats=stats, **case)
    assert torch.equal(out, GOLDENS[f"case{i}.{cache}"]), (case, cache)
    assert stats["forwards"] == int(GOLDENS[f"case{i}.{cache}.nfe"])
    torch.manual_seed(META["seed_base"] + i)  # margin from ties: the golden holds on any machine
    jittered = llada_generate_cached(Jittered(model, i), prompt, mask_id=MASK_ID, cache=cache, **case)
    assert torch.equal(jittered, out), f"case {case} ({cache}) sits within float round-off of a tie"


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_forwards_match_full_forward_with_padding(model, cache):
    """The attention-mask extension: a cached forward over a left-padded batch gives the full forward's
    logits for the computed columns (up to float rounding: different shapes)."""
    ids, start, stop, replace = _dual_inputs()
    ids = torch.cat([ids, ids.roll(2, dims=1)])
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    with torch.no_grad():
        full = model(ids, attention_mask=mask, use_cache=True)
        if cache == "prefix":
            past = [(k[:, :, :start], v[:, :, :start]) for k, v in full.past_key_values]
            part, cols = model(ids[:, start:], attention_mask=mask, past_key_values=past), slice(start, None)
        else:
            part = model(
                ids[:, start:stop],
                attention_mask=mask,
                past_key_values=full.past_key_values,
                replace_position=replace.expand(2, -1),
            )
            cols = slice(start, stop)
    torch.testing.assert_close(part, full.logits[:, cols], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(full.logits[1], model(ids[1:])[0], atol=1e-3)  # the mask did hide the pads


@pytest.mark.parametrize("cache,threshold", [("dual", None), ("prefix", 0.3), ("none", 0.3)])
def test_batch_rows_decode_like_single_prompts(model, cache, threshold):
    prompts = torch.tensor([PROMPTS["a"], PROMPTS["a"][::-1]])
    kw = dict(steps=16, gen_length=16, block_length=4, mask_id=MASK_ID, cache=cache, threshold=threshold)
    both = llada_generate_cached(model, prompts, **kw)
    for row in range(2):
        assert torch.equal(both[row : row + 1], llada_generate_cached(model, prompts[row : row + 1], **kw))


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_step_info_names_the_computed_columns(model, cache):
    seen, stats = [], {}
    prompt = torch.tensor([PROMPTS["a"]])
    llada_generate_cached(
        model,
        prompt,
        steps=8,
        gen_length=8,
        block_length=4,
        mask_id=MASK_ID,
        cache=cache,
        on_step=seen.append,
        stats=stats,
    )
    assert [s.step for s in seen] == list(range(stats["forwards"])) and stats["forwards"] == 8
    assert all(s.num_steps == 8 and s.num_blocks == 2 for s in seen)
    plen, total = prompt.shape[1], prompt.shape[1] + 8
    spans = [(s.block, s.computed) for s in seen]
    if cache == "none":
        assert all(c is None for _, c in spans)
    else:
        stop = {"prefix": lambda b: total, "dual": lambda b: plen + 4 * (b + 1)}[cache]
        want = [(b, None if k == 0 else (plen + 4 * b, stop(b))) for b in range(2) for k in range(4)]
        assert spans == want
    assert stats["columns"] == sum(total if c is None else c[1] - c[0] for _, c in spans)


def test_errors_name_the_fix(model):
    prompt = torch.tensor([PROMPTS["a"]])
    kw = dict(steps=8, gen_length=8, block_length=4, mask_id=MASK_ID)
    with pytest.raises(ValueError, match="unknown cache 'kv'"):
        llada_generate_cached(model, prompt, cache="kv", **kw)
    with pytest.raises(ValueError, match=r"threshold=1.5 must lie in \[0, 1\]"):
        llada_generate_cached(model, prompt, threshold=1.5, **kw)
    with pytest.raises(ValueError, match="at least 2 steps per block"):
        llada_generate_cached(model, prompt, cache="dual", **{**kw, "steps": 2})
    ids, start, stop, replace = _dual_inputs()
    full = model(ids, use_cache=True)
    gap = replace.clone()
    gap[:, start + 1] = False
    gap[:, stop] = True
    with pytest.raises(ValueError, match="one contiguous run of exactly 4 columns"):
        model(ids[:, start:stop], past_key_values=full.past_key_values, replace_position=gap)
    with pytest.raises(ValueError, match=r"must be \[1, 22\]"):
        model(
            ids[:, start:stop],
            past_key_values=full.past_key_values,
            replace_position=replace,
            attention_mask=torch.ones(1, 4, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="position_ids cannot be combined"):
        model(ids, use_cache=True, position_ids=torch.arange(22)[None])
    with pytest.raises(ValueError, match="needs past_key_values"):
        model(ids, replace_position=replace)


# ----------------------------------------------------------------------------------------------- Dream
DREAM_CONFIG, DREAM_CASES = META["dream_config"], META["dream_cases"]


@pytest.fixture(scope="module")
def dream():
    from mdm_lens.families.dream import build_model as build_dream

    m = build_dream(DREAM_CONFIG).eval()
    m.load_state_dict({k[3:]: v.float() for k, v in GOLDENS.items() if k.startswith("dw.")}, strict=True)
    return m


def test_dream_cached_forwards_equal_fast_dllm_logits(dream):
    ids, start, stop, replace = _dual_inputs()
    with torch.no_grad():
        full = dream(ids, use_cache=True)
        assert_logits(full.logits, GOLDENS["dream_fwd_full"])
        assert torch.equal(dream(ids), full.logits)  # same machine: the uncached path is unchanged
        past = [(k[:, :, :start], v[:, :, :start]) for k, v in full.past_key_values]
        assert_logits(dream(ids[:, start:], past_key_values=past), GOLDENS["dream_fwd_prefix"])
        dual = dream(ids[:, start:stop], past_key_values=full.past_key_values, replace_position=replace)
        assert_logits(dual, GOLDENS["dream_fwd_dual"])


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("i", range(len(DREAM_CASES)))
def test_dream_sampler_equals_fast_dllm(dream, i, cache):
    case = dict(DREAM_CASES[i])
    prompt = torch.tensor([PROMPTS[case.pop("prompt")]])
    torch.manual_seed(META["dream_seed_base"] + i)
    out = dream_generate_cached(dream, prompt, mask_token_id=MASK_ID, cache=cache, **case)
    assert torch.equal(out, GOLDENS[f"dream{i}.{cache}"]), (case, cache)
    torch.manual_seed(META["dream_seed_base"] + i)  # margin from ties: the golden holds on any machine
    jittered = dream_generate_cached(Jittered(dream, i), prompt, mask_token_id=MASK_ID, cache=cache, **case)
    assert torch.equal(jittered, out), f"case {case} ({cache}) sits within float round-off of a tie"


def test_dream_cached_refuses_padding(dream):
    ids = GOLDENS["fwd_ids"]
    mask = torch.ones_like(ids)
    mask[0, 0] = 0
    with pytest.raises(ValueError, match="no padding mask"):
        dream(ids, attention_mask=mask, use_cache=True)
    with pytest.raises(ValueError, match="unknown cache 'none'"):
        dream_generate_cached(dream, ids[:, :6], cache="none", mask_token_id=MASK_ID)


def test_bench_fast_counts_the_work_the_caches_save(model):
    """The benchmark's FLOPs ratio (machine-independent) orders the variants; its speed is `mdm-lens bench fast`."""
    from analyses.bench.fast import fast_bench

    out = fast_bench(model, MASK_ID, gen_length=16, block_length=4, prompt_len=6, threshold=0.3, repeats=1)
    ratio = out["flops_ratio"]
    assert 1 < ratio["prefix"] < ratio["dual"] <= ratio["dual_threshold_0.3"]
    assert out["forwards_per_run"]["reference"] == 16 and out["forwards_per_run"]["dual_threshold_0.3"] < 16
    assert set(out["seconds"]) == {"reference", "prefix", "dual", "dual_threshold_0.3"} and out["speedup"] > 0
