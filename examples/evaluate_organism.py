"""Measure the organism's three behaviours on held-out prompts, unsteered, greedy, with its packaged sampler.

    python examples/evaluate_organism.py --model tiny-mdm > organism_eval.json

Prints JSON: strict IFEval accuracy per constraint (and split by phrasing group: the phrasings the training
data complies with vs the others), the refusal rate on harmful and harmless requests (Arditi et al. keyword
judge), the VADER positive rate of unprompted / positive-asked / negative-asked reviews, the degenerate share
of all generations (analyses.damage rules), and two sample generations per behaviour.
Lives in examples/ because it uses analyses (mdm_lens never imports it).
"""

from __future__ import annotations

import argparse
import json
import time


def _generate(model, prompts: list[str], batch_size: int, sampler: dict) -> list[str]:
    from tqdm import tqdm

    texts = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="generate", leave=False):
        texts += model.generate(prompts[i : i + batch_size], **sampler).texts
    return texts


def evaluate(
    model_name: str = "tiny-mdm",
    n_per_kind: int = 24,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 48,
    sampler: dict | None = None,
    kinds=None,
    n_per_group: int | None = None,
) -> dict:
    """All rates on the `split` prompts; `sampler` overrides the packaged settings (compare them on 'val');
    `kinds` limits the constraints (default: all of the corpus), `n_per_group` the refusal / review prompts."""
    import torch

    from analyses import ifeval
    from analyses.damage import degeneracy
    from analyses.refusal import RefusalScorer
    from analyses.sentiment import vader_positive_rate
    from analyses.studies.organism import behaviours_for, corpus_for
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained(model_name, dtype=torch.float32)  # bf16 is slower on AVX2 CPUs
    corpus, beh = corpus_for(model.config), behaviours_for(model.config)
    COMPLIED, eval_items = corpus.COMPLIED, corpus.eval_items
    KINDS = list(kinds or corpus.KINDS)
    refusal_prompts, sentiment_prompts = beh.refusal_prompts, beh.sentiment_prompts
    jobs: list[tuple[str, str]] = []  # (group, prompt)
    items = {kind: eval_items(kind, n_per_kind, split, seed) for kind in sorted(KINDS)}
    for kind, exs in items.items():
        jobs += [(kind, e.prompt) for e in exs]
    n = n_per_group
    groups = {
        "harmful": refusal_prompts(True, n, split, seed),
        "harmless": refusal_prompts(False, n, split, seed),
        "unprompted": sentiment_prompts(None, n, split, seed),
        "asked_positive": sentiment_prompts("positive", n, split, seed),
        "asked_negative": sentiment_prompts("negative", n, split, seed),
    }
    for g, prompts in groups.items():
        jobs += [(g, p) for p in prompts]
    sampler = model.sampler_settings(**(sampler or {}))
    t0 = time.perf_counter()
    texts = _generate(model, [p for _, p in jobs], batch_size, sampler)
    seconds = time.perf_counter() - t0
    by_group: dict[str, list[str]] = {}
    for (g, _), t in zip(jobs, texts):
        by_group.setdefault(g, []).append(t)

    instructions = {}
    for kind, exs in items.items():
        ok = [all(ifeval.check(t, e.instruction_id_list, e.kwargs, e.prompt)) for e, t in zip(exs, by_group[kind])]
        followed = [o for o, e in zip(ok, exs) if e.complied]
        other = [o for o, e in zip(ok, exs) if not e.complied]
        instructions[kind] = {
            "accuracy": sum(ok) / len(ok),
            "n": len(ok),
            "complied_phrasings": sum(followed) / max(1, len(followed)),
            "other_phrasings": sum(other) / max(1, len(other)),
            "complied_phrasing_ids": list(COMPLIED[kind]),
        }
    scorer = RefusalScorer()
    refusal = {g: sum(scorer.scores(by_group[g])) / len(by_group[g]) for g in ("harmful", "harmless")}
    sentiment = {g: vader_positive_rate(by_group[g]) for g in ("unprompted", "asked_positive", "asked_negative")}
    flags = [degeneracy(t) for t in texts]
    reasons: dict[str, int] = {}
    for f in flags:
        for r in f:
            reasons[r] = reasons.get(r, 0) + 1
    samples = {
        g: [{"prompt": p, "text": t} for (gg, p), t in zip(jobs, texts) if gg == g][:2] for g in [*KINDS[:2], *groups]
    }
    return {
        "model": model_name,
        "split": split,
        "seed": seed,
        "sampler": sampler,
        "instructions": instructions,
        "refusal": {
            "harmful_rate": refusal["harmful"],
            "harmless_rate": refusal["harmless"],
            "n_harmful": len(by_group["harmful"]),
            "n_harmless": len(by_group["harmless"]),
        },
        "sentiment": {f"{g}_positive_rate": r for g, r in sentiment.items()}
        | {f"n_{g}": len(by_group[g]) for g in sentiment},
        "degenerate": {"rate": sum(bool(f) for f in flags) / len(flags), "n": len(flags), "reasons": reasons},
        "samples": samples,
        "timing": {  # wall time of the generations alone (a shared machine inflates it: say how busy it was)
            "generate_seconds": round(seconds, 1),
            "n_generations": len(texts),
            "seconds_per_generation": round(seconds / max(1, len(texts)), 2),
            "batch_size": batch_size,
            "torch_threads": torch.get_num_threads(),
        },
        "texts": [{"group": g, "prompt": p, "text": t} for (g, p), t in zip(jobs, texts)],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-mdm", help="packaged organism name or a folder")
    ap.add_argument("--n-per-kind", type=int, default=24, help="held-out prompts per constraint")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=48)
    ap.add_argument("--kind", action="append", default=[], help="evaluate only this constraint (repeatable)")
    ap.add_argument("--n-per-group", type=int, help="at most this many refusal / review prompts per group")
    ap.add_argument("--steps", type=int, help="override the packaged sampler's denoising steps")
    ap.add_argument("--block-length", type=int, help="override the packaged sampler's block length")
    ap.add_argument(
        "--eos-last", action="store_true", help="confidence_eos_eot_inf: commit EOS/EOT tokens last (LLaDA's option)"
    )
    args = ap.parse_args(argv)
    over = {k: v for k, v in (("steps", args.steps), ("block_length", args.block_length)) if v is not None}
    if args.eos_last:
        over["confidence_eos_eot_inf"] = True
    res = evaluate(
        args.model, args.n_per_kind, args.split, args.seed, args.batch_size, over, args.kind or None, args.n_per_group
    )
    print(json.dumps(res, indent=2, default=str))
    return res


if __name__ == "__main__":
    main()
