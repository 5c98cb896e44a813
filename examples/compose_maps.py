"""Compose two steering maps (lowercase + no comma) and measure their interference.

    python examples/compose_maps.py --model tiny-if
    python examples/compose_maps.py --smoke

For an 8B model use IFEval lowercase / no-comma prompts (analyses.studies.tasks.ifeval_tasks); each variant
(none, A, B, A+B) generates the two test sets once (estimate: minutes per variant on one GPU).
"""

from __future__ import annotations

import argparse

from analyses.studies.demo import PAIR, composition
from analyses.studies.experiment import ExperimentConfig, default_sites
from analyses.studies.tasks import organism_tasks
from analyses.studies.organism import corpus_for


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-if")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained(args.model)
    n = (6, 2, 3) if args.smoke else (48, 6, 24)
    sampler = (
        dict(gen_length=16, steps=8, block_length=16) if args.smoke else dict(model.config.get("mdm_lens_sampler", {}))
    )
    cfg = ExperimentConfig(n_calib=n[0], n_val=n[1], n_test=n[2], sampler=sampler)
    rows = composition(
        model, organism_tasks(PAIR, *n, corpus=corpus_for(model.config)), {}, cfg, default_sites(model)[0]
    )
    for r in rows:
        print(f"{r['plan']:>4} {r['task']:<32} {100 * r['accuracy']:.1f}%")
    return rows


if __name__ == "__main__":
    main()
