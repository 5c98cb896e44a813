"""`mdm-lens bench attn`: what caching attention patterns costs. A layer whose `hook_attn_scores` / `hook_pattern`
is hooked runs attention written out (eager) instead of SDPA; every other layer keeps SDPA. Ratios are taken
within one run against the plain forward, on one model (default: the mid-size random LLaDA of `bench.MID`).

Variants, each one forward of `batch` x `seq` tokens under `torch.no_grad`:
* `plain`: no hook (SDPA everywhere);
* `z_all`: `hook_z` of every layer cached (still SDPA: the cost of caching a per-head tensor alone);
* `pattern_one`: layer 0's `hook_pattern` cached (one eager layer);
* `pattern_all`: every layer's `hook_pattern` cached (every layer eager).
The eager overhead proper is `pattern_all / z_all` (same hooks and copies, SDPA vs eager); `pattern_all_ratio`
(vs plain) is what a user caching every pattern waits.
"""

from __future__ import annotations

import torch

from .sampler import MID, interleaved_medians


def attn_bench(model, *, seq: int = 256, batch: int = 1, repeats: int = 5) -> dict:
    """Timings (median seconds) and ratios for one HookedMDM; logits of the eager run vs plain (max abs)."""
    vocab = int(model.cfg.d_vocab)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, min(vocab, model.mask_id), (batch, seq), generator=g).to(model.input_device)
    ids[:, seq // 2 :] = model.mask_id  # a canvas half masked, as mid-generation
    pattern_all, z_all = model.site_names(["pattern"]), model.site_names(["z"])

    def plain():
        with torch.no_grad():
            return model(ids)

    def cached(names):
        return lambda: model.run_with_cache(ids, names_filter=names)[0]

    fns = {
        "plain": plain,
        "z_all": cached(z_all),
        "pattern_one": cached(pattern_all[:1]),
        "pattern_all": cached(pattern_all),
    }
    med = interleaved_medians(fns, repeats)
    err = (fns["pattern_all"]().float() - plain().float()).abs().max().item()
    return {
        "seconds": med,
        "pattern_all_ratio": med["pattern_all"] / med["plain"],
        "pattern_one_ratio": med["pattern_one"] / med["plain"],
        "z_all_ratio": med["z_all"] / med["plain"],
        "eager_vs_sdpa_ratio": med["pattern_all"] / med["z_all"],
        "eager_logits_max_abs_diff": err,
        "settings": {
            "seq": seq,
            "batch": batch,
            "repeats": repeats,
            "n_layers": model.n_layers,
            "d_model": int(model.cfg.d_model),
            "n_heads": int(model.cfg.n_heads),
            "dtype": str(next(model.model.parameters()).dtype),
            "device": str(model.input_device),
            "threads": torch.get_num_threads(),
        },
    }


def run_attn_bench(
    *, model: str | None = None, seq: int = 256, batch: int = 1, repeats: int = 5, threads: int | None = None
) -> dict:
    """`mdm-lens bench attn` as JSON: `model` a checkpoint folder / hub id, or None for the mid-size random LLaDA.
    `threads` sets torch's CPU threads first (on a shared, oversubscribed CPU 1 thread times far more steadily)."""
    from mdm_lens.hooked import HookedMDM
    from mdm_lens.families import tiny_config

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads}: use a positive count of CPU threads, or None to keep torch's")
        torch.set_num_threads(threads)
    if model:
        name, hooked = model, HookedMDM.from_pretrained(model)
    else:
        name, hooked = "mid-random-d1024-L8", HookedMDM.from_config(tiny_config("llada", **MID))
    hooked.eval()
    return {"benchmark": "attn", "models": {name: attn_bench(hooked, seq=seq, batch=batch, repeats=repeats)}}


if __name__ == "__main__":  # python -m analyses.bench.attn [seq] [threads]  (the CLI: the lead's)
    import json
    import sys

    args = [int(a) for a in sys.argv[1:3]]
    print(
        json.dumps(run_attn_bench(seq=args[0] if args else 256, threads=args[1] if len(args) > 1 else None), indent=1)
    )
