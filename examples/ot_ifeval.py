"""Lek et al.'s protocol: IFEval accuracy per constraint and averaged, per steering method, λ on validation.

    python examples/ot_ifeval.py --model GSAI-ML/LLaDA-8B-Instruct --out runs/llada   # or LLaDA 1.5 / Dream
    python examples/ot_ifeval.py --smoke                                                # tiny-if, seconds

8B models (bf16): ~16 GB of weights plus activations, so one 24 GB+ GPU; collection is one forward per
prompt, and generation dominates: 7 methods × (λ grid × 10 val + 64 test) prompts × 256 steps per
constraint type — plan on the order of hours on one A100/H100-class card (an estimate: not measured here,
no GPU was available when this was written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from analyses.studies.experiment import ExperimentConfig, run_experiment, write_result
from analyses.studies.tasks import ifeval_tasks, organism_tasks
from analyses.studies.organism import corpus_for

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "ifeval" / "ifeval_single_instr_format.jsonl"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-if")
    ap.add_argument("--tasks", default=str(SHARED), help="single-instruction IFEval jsonl")
    ap.add_argument("--out", default="runs/ot_ifeval")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    from mdm_lens import HookedMDM

    dtype = None if args.smoke or not torch.cuda.is_available() else torch.bfloat16
    model = HookedMDM.from_pretrained(args.model, dtype=dtype, device="cuda" if dtype else None)
    if args.smoke:
        tasks = organism_tasks(["change_case:english_capital"], 6, 2, 3, corpus=corpus_for(model.config))
        cfg = ExperimentConfig(
            lambdas=(1.0,), n_calib=6, n_val=2, n_test=3, sampler=dict(gen_length=16, steps=8, block_length=16)
        )
    else:
        tasks = ifeval_tasks(args.tasks)
        cfg = ExperimentConfig()
    result = run_experiment(model, tasks, cfg)
    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
