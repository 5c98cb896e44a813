"""ILRR: steer unprompted reviews toward a positive reference; compare with no steering and with k samples
(random pick, and the sample closest to the reference) at no less compute (`analyses.studies.ilrr_study`).

    python examples/ilrr_sentiment.py --out runs/ilrr
    python examples/ilrr_sentiment.py --quick --out runs/ilrr_q
    python examples/ilrr_sentiment.py --reference "What a wonderful, joyful day." --out runs/ilrr_ref

Writes OUT/generations.jsonl (every generation and sample; resumable), OUT/ilrr.json, OUT/ilrr.md and
OUT/ilrr.png. Positive = VADER compound > 0.05 (offline). The strength s is chosen on validation requests.
"""

from __future__ import annotations

import argparse


def main(argv=None):
    from analyses.studies.ilrr_study import QUICK, REFERENCE, ILRRConfig, run_ilrr_study
    from analyses.records import write_study
    from mdm_lens.organisms import default_organism
    from mdm_lens import HookedMDM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        default=default_organism(),
        help="packaged organism name or a folder (default: tiny-mdm; tiny-if until it is packaged)",
    )
    ap.add_argument("--reference", default=REFERENCE)
    ap.add_argument("--strengths", type=float, nargs="+", help="ILRR strengths to choose from on validation")
    ap.add_argument("--k", type=int, default=2, help="samples per request of the sampling baseline")
    ap.add_argument("--out", default="runs/ilrr")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model = HookedMDM.from_pretrained(args.model)
    opts = dict(QUICK if args.quick else {}, reference=args.reference, k=args.k, seed=args.seed)
    if args.strengths:
        opts["strengths"] = tuple(args.strengths)
    res = run_ilrr_study(model, ILRRConfig(**opts), out=args.out, model_name=args.model)
    write_study(res, args.out, "ilrr", "ilrr.png")
    print(res.table_markdown())
    return res


if __name__ == "__main__":
    main()
