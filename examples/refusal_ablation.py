"""Shnaidman et al.: ablate a refusal direction, choose the layer × role × token scope on validation,
report the refusal rate on held-out harmful requests before / after, with damage (`analyses.studies.refusal_study`).

    python examples/refusal_ablation.py --out runs/refusal            # full size on the tiny-mdm organism
    python examples/refusal_ablation.py --quick --out runs/refusal_q  # seconds

Writes OUT/generations.jsonl (every generation; resumable), OUT/refusal.json, OUT/refusal.md and
OUT/refusal_sweep.png (validation refusal rate per cell, one colour scale). The prompts are the organism
corpus's harmful / harmless requests (train: direction, val: cell choice, test: reported rates).
"""

from __future__ import annotations

import argparse


def main(argv=None):
    from analyses.studies.refusal_study import QUICK, RefusalConfig, run_refusal_study
    from analyses.records import write_study
    from mdm_lens.organisms import default_organism
    from mdm_lens import HookedMDM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        default=default_organism(),
        help="packaged organism name or a folder (default: tiny-mdm; tiny-if until it is packaged)",
    )
    ap.add_argument("--out", default="runs/refusal")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model = HookedMDM.from_pretrained(args.model)
    cfg = RefusalConfig(**(QUICK if args.quick else {}), seed=args.seed)
    res = run_refusal_study(model, cfg, out=args.out, model_name=args.model)
    write_study(res, args.out, "refusal", "refusal_sweep.png")
    print(res.table_markdown())
    return res


if __name__ == "__main__":
    main()
