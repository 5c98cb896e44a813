"""`mdm-lens bench sampler` and the timing helpers every benchmark shares: ratios measured within one run."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from mdm_lens.activation_cache import every_site_name

MID = {
    "d_model": 1024,
    "n_layers": 8,
    "n_heads": 16,
    "n_kv_heads": 16,
    "mlp_hidden_size": 2816,
    "vocab_size": 2048,
    "embedding_size": 2048,
}


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time per variant, variants interleaved so drift hits them all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_models(model_arg: str | None) -> list[tuple[str, object]]:
    from mdm_lens.hooked import HookedMDM
    from mdm_lens.families import tiny_config

    if model_arg:
        return [(model_arg, HookedMDM.from_pretrained(model_arg))]
    return [
        ("tiny-random", HookedMDM.from_config(tiny_config("llada"))),
        ("mid-random-d1024-L8", HookedMDM.from_config(tiny_config("llada", **MID))),
    ]


def per_model(
    name: str, bench: Callable[..., dict], model_arg: str | None, goals: dict[str, float], **settings: int
) -> dict:
    """`{"benchmark": name, "models": {model: bench(model, **settings)}, "goals": goals}` over `bench_models`."""
    results: dict = {"benchmark": name, "models": {}, "goals": goals}
    for label, hooked in bench_models(model_arg):
        results["models"][label] = bench(hooked.eval(), **settings)
    return results


def sampler_bench(model, *, gen_length: int, steps: int, prompt_len: int, batch: int, repeats: int) -> dict:
    from mdm_lens.sampling import llada_generate

    g = torch.Generator().manual_seed(0)
    vocab = model.config.get("vocab_size", 256)
    prompt = torch.randint(0, min(vocab, model.mask_id), (batch, prompt_len), generator=g).to(model.input_device)
    kw = dict(steps=steps, gen_length=gen_length, block_length=gen_length, mask_id=model.mask_id)
    inner = model.model

    def run(fwd):
        def go():
            torch.manual_seed(0)
            with torch.no_grad():
                return llada_generate(fwd, prompt, **kw)

        return go

    def hooked():
        # every site a cache of "all" takes (on-demand per-head results left out, as TL leaves them out)
        noop = {name: (lambda act, ctx: None) for name in every_site_name(model)}
        with model.hooks(noop):
            return run(model)()

    med = interleaved_medians({"bare": run(inner), "wrapper": run(model), "all_sites_noop": hooked}, repeats)
    return {
        "seconds": med,
        "wrapper_ratio": med["wrapper"] / med["bare"],
        "all_sites_noop_ratio": med["all_sites_noop"] / med["bare"],
        "n_sites": len(every_site_name(model)),
        "settings": {
            **kw,
            "prompt_len": prompt_len,
            "batch": batch,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
        },
    }


def run_sampler_bench(
    what: str = "sampler",
    *,
    model: str | None = None,
    gen_length: int = 32,
    steps: int = 32,
    prompt_len: int = 16,
    batch: int = 1,
    repeats: int = 5,
) -> dict:
    """`mdm-lens bench sampler`: the wrapper's and no-op hooks' overhead over the bare model, per model."""
    if what != "sampler":
        raise ValueError(
            f"this module runs the 'sampler' benchmark, not {what!r}; 'steer' and 'fit' live in analyses.bench.steering"
        )
    return per_model(
        "sampler",
        sampler_bench,
        model,
        {"wrapper_ratio": 1.02, "all_sites_noop_ratio": 1.10},
        gen_length=gen_length,
        steps=steps,
        prompt_len=prompt_len,
        batch=batch,
        repeats=repeats,
    )
