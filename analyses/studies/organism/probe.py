"""A small refusal-direction probe on an organism of corpus v3 (Arditi et al.'s shape, few prompts, CPU budget).

Difference-in-means of the residual stream (`hook_resid_post`, mean over prompt positions) between harmful and
harmless *training* requests, per layer. Ablation: one layer's unit direction projected out of the residual
stream after every block (`resid_mid` and `resid_post` of every layer, every position and step). The layer is
chosen on *validation* harmful requests (lowest refusal rate with at most `max_degenerate` degenerate texts);
test requests are scored once. Addition: the layer's difference-in-means vector (ActAdd with α = ‖Δm‖, times
`add_scale`) added at that layer on harmless test requests. Rates carry 95% Wilson intervals.
"""

from __future__ import annotations

from collections.abc import Sequence


def _rate(flags: Sequence[bool]) -> dict:
    from analyses.stats import wilson_interval

    k, n = sum(map(bool, flags)), len(flags)
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi}


def _score(model, prompts, plan, sampler) -> dict:
    from analyses.damage import degeneracy
    from analyses.refusal import RefusalScorer

    texts = model.generate(list(prompts), plan=plan, **sampler).texts
    return {
        "refusal": _rate(RefusalScorer().scores(texts)),
        "degenerate": _rate([bool(degeneracy(t)) for t in texts]),
        "samples": [{"prompt": p, "text": t} for p, t in zip(prompts[:3], texts[:3])],
    }


def refusal_probe(
    model,
    layers: Sequence[int],
    n_calib: int = 32,
    n_val: int = 8,
    n_test: int = 16,
    add_scale: float = 1.0,
    max_degenerate: float = 0.1,
    sampler: dict | None = None,
    seed: int = 0,
) -> dict:
    """Unsteered / ablated refusal on harmful test requests, unsteered / added on harmless ones (see module)."""
    from interventions import Plan, fit_map
    from mdm_lens.collect import collect_contrastive
    from mdm_lens.sites import get_act_name

    from . import behaviours_for

    bad = [l for l in layers if not 0 <= l < model.n_layers]
    if bad or not layers:
        raise ValueError(f"layers={list(layers)}: give at least one layer in 0..{model.n_layers - 1}")
    beh = behaviours_for(model.config)
    sampler = sampler or {}
    harmless, harmful = (beh.refusal_prompts(h, n_calib, "train", seed) for h in (False, True))
    sites = [get_act_name("resid_post", l) for l in layers]
    src, tgt = collect_contrastive(model, harmless, harmful, sites, pooling="mean", scope="prompt", progress=False)
    every = [get_act_name(p, l) for l in range(model.n_layers) for p in ("resid_mid", "resid_post")]

    def ablation(layer):
        m = fit_map(
            "directional_ablation", src[get_act_name("resid_post", layer)], tgt[get_act_name("resid_post", layer)]
        )
        return Plan({s: m for s in every})

    val = beh.refusal_prompts(True, n_val, "val", seed)
    sweep = {"none": _score(model, val, None, sampler)}
    for layer in layers:
        sweep[layer] = _score(model, val, ablation(layer), sampler)
    ok = [l for l in layers if sweep[l]["degenerate"]["rate"] <= max_degenerate] or list(layers)
    best = min(ok, key=lambda l: (sweep[l]["refusal"]["rate"], sweep[l]["degenerate"]["rate"]))
    test_h, test_ok = beh.refusal_prompts(True, n_test, "test", seed), beh.refusal_prompts(False, n_test, "test", seed)
    site = get_act_name("resid_post", best)
    add = Plan({site: fit_map("actadd", src[site], tgt[site])}).strength(add_scale)
    return {
        "layers": list(layers),
        "chosen_layer": best,
        "add_scale": add_scale,
        "n_calib": n_calib,
        "validation": {str(k): {"refusal": v["refusal"], "degenerate": v["degenerate"]} for k, v in sweep.items()},
        "test": {
            "harmful_none": _score(model, test_h, None, sampler),
            "harmful_ablated": _score(model, test_h, ablation(best), sampler),
            "harmless_none": _score(model, test_ok, None, sampler),
            "harmless_added": _score(model, test_ok, add, sampler),
        },
    }
