"""Shnaidman et al.: directional ablation of a refusal direction, swept over layers × hook points × scope.

    python examples/refusal_ablation.py --model GSAI-ML/LLaDA-8B-Instruct --harmful harmful.txt \
        --harmless harmless.txt --out runs/refusal
    python examples/refusal_ablation.py --smoke

The direction is fitted per site from harmful vs harmless prompts (one prompt a line); the metric is the
keyword refusal rate (analyses.refusal). 8B bf16: ~16 GB + activations; each sweep cell generates the
eval prompts once (≈ layers × hook points × scopes × λ generations) — hours on one GPU for a full grid
(estimate, not measured here).
"""
from __future__ import annotations

import argparse

from analyses.refusal import refusal_rate
from analyses.sweep import layer_sweep, sweep_sites
from interventions import Plan, fit_map
from mdm_lens.collect import collect_contrastive

POINTS = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_pre", "mlp_out"]   # site roles swept


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-if")
    ap.add_argument("--harmful")
    ap.add_argument("--harmless")
    ap.add_argument("--out", default="runs/refusal")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    from mdm_lens import HookedMDM
    model = HookedMDM.from_pretrained(args.model)
    if args.smoke or not (args.harmful and args.harmless):
        from mdm_lens.organism.corpus import calibration_pairs
        harmless, harmful = calibration_pairs("keywords:forbidden_words", 6)
        sampler = dict(gen_length=16, steps=8, block_length=16)
        points, layers = ["resid_post", "mlp_out"], [0, 1]
    else:
        read = lambda p: [x.strip() for x in open(p) if x.strip()]   # noqa: E731
        harmful, harmless, sampler, points, layers = read(args.harmful), read(args.harmless), {}, POINTS, None
    sites = sweep_sites(model, points, layers)
    # ablate the harmful-minus-harmless direction: source = harmless, target = harmful
    harmless_acts, harmful_acts = collect_contrastive(model, harmless, harmful, sites)
    factory = lambda ss: Plan({s: fit_map("directional_ablation", harmless_acts[s], harmful_acts[s], site=s)  # noqa: E731
                               for s in ss})
    res = layer_sweep(model, factory, harmful[:8], refusal_rate, layers=layers, hook_points=points,
                      scopes=["all", "prompt", "response"], **sampler)
    import os
    os.makedirs(args.out, exist_ok=True)
    res.plot(os.path.join(args.out, "refusal_sweep.png"))
    return res


if __name__ == "__main__":
    main()
