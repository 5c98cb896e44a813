"""`mdm-lens bench fast`: LLaDA's reference sampler vs Fast-dLLM's prefix cache, dual cache and dual cache +
confidence threshold, on one model in one run: wall-time speedup and forward FLOPs ratio.

FLOPs are counted per forward from the columns it computes and the key columns it attends over
(2 * matmul parameters per computed column, plus 4 * d_model per (query, key) pair and layer), so the
ratio is the work the caches save, independent of the machine; wall time is what a user waits.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Callable

import torch
from tqdm.auto import tqdm

from .sampler import MID
from mdm_lens.sampling import llada_generate, llada_generate_cached


class ForwardCounter:
    """A forward callable that counts the FLOPs of every call it passes on to `model`."""

    def __init__(self, model: Callable, cfg):
        self.model = model
        self.layers, self.d = cfg.n_layers, cfg.d_model
        per_layer = cfg.d_model * (cfg.d_model * 2 + 2 * cfg.kv_heads * cfg.head_dim) + 3 * cfg.d_model * cfg.hidden
        self.per_column = 2 * (cfg.n_layers * per_layer + cfg.d_model * cfg.n_embed)
        self.flops = 0
        self.forwards = 0

    def __call__(self, ids: torch.Tensor, **kw):
        b, cols = ids.shape
        past = kw.get("past_key_values")
        keys = cols if past is None else past[0][0].shape[-2] + (0 if kw.get("replace_position") is not None else cols)
        self.flops += b * (cols * self.per_column + 4 * self.layers * self.d * cols * keys)
        self.forwards += 1
        return self.model(ids, **kw)


def fast_bench(
    model,
    mask_id: int,
    *,
    gen_length: int = 256,
    block_length: int = 32,
    steps: int | None = None,
    prompt_len: int = 64,
    threshold: float = 0.9,
    repeats: int = 1,
    hooked=None,
    plan=None,
) -> dict:
    """`model`: a native LLaDA model (what `HookedMDM.model` holds). steps None = gen_length (one token per
    step, the setting Fast-dLLM reports its cache speedups in). Each variant runs `repeats` times, variants
    interleaved so load drift hits them alike; FLOPs are counted on every run (they do not vary).

    With `hooked` (the HookedMDM around `model`) and `plan` (e.g. Linear-ACT on every layer), two more variants
    run in the same rounds: the dual cache (fixed forwards per block) through the wrapper unsteered and steered by `plan`;
    `hooked_ratio` is steered / unsteered time, the steering overhead on the fast path."""
    steps = gen_length if steps is None else steps
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    prompt = torch.randint(0, min(cfg.vocab_size, mask_id), (1, prompt_len), generator=g).to(device)
    kw = dict(steps=steps, gen_length=gen_length, block_length=block_length, mask_id=mask_id)
    variants = {
        "reference": lambda f: llada_generate(f, prompt, **kw),
        "prefix": lambda f: llada_generate_cached(f, prompt, cache="prefix", **kw),
        "dual": lambda f: llada_generate_cached(f, prompt, cache="dual", **kw),
        f"dual_threshold_{threshold}": lambda f: llada_generate_cached(
            f, prompt, cache="dual", threshold=threshold, **kw
        ),
    }
    fast = variants["dual"]  # a fixed number of forwards per block, so steering cannot change the work
    steered = {}
    if plan is not None:
        steered = {"fast_unsteered": lambda: fast(hooked), "fast_steered": lambda: _steered(hooked, plan, fast)}
    with torch.no_grad():  # warm-up: one forward of each shape family
        model(torch.cat([prompt, prompt], 1)[:, : prompt_len + block_length])
    counters = {name: ForwardCounter(model, cfg) for name in variants}
    calls = {**{name: functools.partial(run, counters[name]) for name, run in variants.items()}, **steered}
    med, outputs = _rounds(calls, repeats, device)
    fastest = min((k for k in variants if k != "reference"), key=med.get)
    extra = {}
    if steered:
        extra = {
            "hooked_ratio": med["fast_steered"] / med["fast_unsteered"],
            "hooked_variant": "dual through HookedMDM",
            "steered_sites": len(plan.sites),
            "steered_tokens_differ": float(
                (outputs["fast_steered"][:, prompt_len:] != outputs["fast_unsteered"][:, prompt_len:]).float().mean()
            ),
        }
    ref = counters["reference"].flops
    gen = slice(prompt_len, None)
    return {
        "seconds": med,
        "speedup": med["reference"] / med[fastest],
        **extra,
        "fastest": fastest,
        "speedup_by_variant": {k: med["reference"] / med[k] for k in variants if k != "reference"},
        "flops_ratio": {k: ref / c.flops for k, c in counters.items() if k != "reference"},
        "forwards_per_run": {k: c.forwards // repeats for k, c in counters.items()},
        "tokens_equal_reference": {
            k: float((o[:, gen] == outputs["reference"][:, gen]).float().mean())
            for k, o in outputs.items()
            if k != "reference"
        },
        "settings": {
            **{k: v for k, v in kw.items() if k != "mask_id"},
            "prompt_len": prompt_len,
            "threshold": threshold,
            "repeats": repeats,
            "device": str(device),
            "dtype": str(next(model.parameters()).dtype),
            "threads": torch.get_num_threads(),
        },
    }


def _rounds(calls: dict, repeats: int, device) -> tuple[dict[str, float], dict]:
    """Median seconds and last output per variant: `repeats` rounds, every variant once per round (each seeded
    alike), so load drift hits them all."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    outputs = {}
    with torch.no_grad():
        for _ in tqdm(range(repeats), desc="bench fast", unit="round", leave=False):
            for name, run in calls.items():
                torch.manual_seed(0)
                t0 = time.perf_counter()
                outputs[name] = _sync(run(), device)
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, outputs


def _steered(hooked, plan, run):
    with hooked.steer(plan):
        return run(hooked)


def _sync(out, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out


def run_fast_bench(
    *,
    model: str | None = None,
    gen_length: int = 256,
    block_length: int = 32,
    steps: int | None = None,
    prompt_len: int = 64,
    threshold: float = 0.9,
    repeats: int = 1,
    device: str | None = None,
    dtype: str | None = None,
    steer=None,
) -> dict:
    """The JSON of `mdm-lens bench fast`. Default model: the mid-size random LLaDA (`bench.MID`); on a GPU pass
    e.g. device="cuda", dtype="bfloat16" (and model=GSAI-ML/LLaDA-8B-Instruct for the real thing). `steer`:
    model -> plan to time on the fast path (`hooked_ratio`; the CLI passes Linear-ACT on every layer)."""
    from mdm_lens.hooked import HookedMDM
    from mdm_lens.loading import parse_dtype
    from mdm_lens.families import tiny_config

    if model:
        hooked = HookedMDM.from_pretrained(model, dtype=dtype, device=device)
        name = model
    else:
        hooked = HookedMDM.from_config(tiny_config("llada", **MID))
        hooked.model.to(device=device or "cpu", dtype=parse_dtype(dtype) or torch.float32)
        with torch.no_grad():  # a random head may predict [MASK], which a trained one never does
            hooked.model.model.transformer.ff_out.weight[hooked.mask_id] = 0
        name = "mid-random-d1024-L8"
    inner = hooked.model.eval()
    t0 = time.perf_counter()
    result = fast_bench(
        inner,
        hooked.mask_id,
        gen_length=gen_length,
        block_length=block_length,
        steps=steps,
        prompt_len=prompt_len,
        threshold=threshold,
        repeats=repeats,
        hooked=hooked,
        plan=steer(hooked) if steer is not None else None,
    )
    return {
        "benchmark": "fast",
        "model": name,
        **result,
        "total_seconds": time.perf_counter() - t0,
        "goals": {"speedup": 3.0, "hooked_ratio": 1.10},
    }
