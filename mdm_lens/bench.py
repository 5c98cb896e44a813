"""`mdm-lens bench ...`: overhead ratios measured within one run, printed as JSON."""
from __future__ import annotations

import json
import statistics
import time
from typing import Callable

import torch

MID = {"d_model": 1024, "n_layers": 8, "n_heads": 16, "n_kv_heads": 16, "mlp_hidden_size": 2816,
       "vocab_size": 2048, "embedding_size": 2048}


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time per variant, variants interleaved so drift hits them all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():         # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_models(model_arg: str | None) -> list[tuple[str, object]]:
    from .hooked import HookedMDM
    from .loading import tiny_config
    if model_arg:
        return [(model_arg, HookedMDM.from_pretrained(model_arg))]
    return [("tiny-random", HookedMDM.from_config(tiny_config("llada"))),
            ("mid-random-d1024-L8", HookedMDM.from_config(tiny_config("llada", **MID)))]


def sampler_bench(model, *, gen_length: int, steps: int, prompt_len: int, batch: int, repeats: int) -> dict:
    from .sampling import llada_generate
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
        noop = {name: (lambda act, ctx: None) for name in model.hook_names}
        with model.hooks(noop):
            return run(model)()

    med = interleaved_medians({"bare": run(inner), "wrapper": run(model), "all_sites_noop": hooked}, repeats)
    return {"seconds": med, "wrapper_ratio": med["wrapper"] / med["bare"],
            "all_sites_noop_ratio": med["all_sites_noop"] / med["bare"], "n_sites": len(model.hook_names),
            "settings": {**kw, "prompt_len": prompt_len, "batch": batch, "repeats": repeats,
                         "threads": torch.get_num_threads()}}


def cmd_bench(args) -> int:
    results = {"benchmark": args.what, "models": {}}
    if args.what == "sampler":
        for name, model in bench_models(args.model):
            model.eval()
            results["models"][name] = sampler_bench(model, gen_length=args.gen_length, steps=args.steps,
                                                    prompt_len=args.prompt_len, batch=args.batch,
                                                    repeats=args.repeats)
            results["goals"] = {"wrapper_ratio": 1.02, "all_sites_noop_ratio": 1.10}
    else:
        from interventions.bench import run_bench   # the CLI may import upward
        results = run_bench(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="overhead benchmarks (JSON ratios from one run)")
    p.add_argument("what", choices=["sampler", "steer", "fit"])
    p.add_argument("--model", default=None, help="default: a tiny and a mid-size random LLaDA model")
    p.add_argument("--gen-length", dest="gen_length", type=int, default=32)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--prompt-len", dest="prompt_len", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the JSON here")
    p.set_defaults(func=cmd_bench)
