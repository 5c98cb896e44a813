"""`mdm-lens demo` and `mdm-lens experiment` subcommands."""
from __future__ import annotations

import os

# analyses.experiment.METHODS, spelled here so that building the parser imports no torch (a test holds them equal)
METHODS = ("none", "directional_ablation", "mean_act", "actadd", "gaussian_ot", "linear_act", "bures_ot")


def cmd_demo(args) -> int:
    from .demo import run_demo, table
    summary = run_demo(args.out, model_name=args.model, quick=args.quick, seed=args.seed)
    print(table(summary))
    print(f"\nreport written to {os.path.abspath(args.out)} (summary.md, summary.json, CSV and PNG figures); "
          f"{summary['seconds']:.0f} s")
    return 0


def cmd_experiment(args) -> int:
    from mdm_lens import HookedMDM

    from .experiment import ExperimentConfig, run_experiment, write_result
    from .tasks import ifeval_tasks, organism_tasks
    model = HookedMDM.from_pretrained(args.model)
    if args.tasks == "organism":
        from .demo import KINDS
        tasks = organism_tasks(KINDS, args.n_calib, args.n_val, args.n_test, args.seed)
    else:
        tasks = ifeval_tasks(args.tasks, args.n_calib, args.n_val, args.n_test, args.seed,
                             instruction_ids=args.instruction_id or None)
    sampler = {k: v for k, v in (("gen_length", args.gen_length), ("steps", args.steps),
                                 ("block_length", args.block_length), ("cache", args.cache),
                                 ("threshold", args.threshold)) if v is not None}
    if args.sampler != "reference":         # recorded in the run config (and its hash) like every sampler option
        sampler["sampler"] = args.sampler
    cfg = ExperimentConfig(lambdas=tuple(args.lambdas), n_calib=args.n_calib, n_val=args.n_val, n_test=args.n_test,
                           seed=args.seed, sampler=sampler, batch_size=args.batch_size,
                           methods=tuple(args.methods))
    result = run_experiment(model, tasks, cfg)
    paths = write_result(result, args.out)
    for m, s in result["summary"].items():
        print(f"{m:<22} {100 * s['accuracy']:5.1f}%  [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]")
    print(f"result: {paths['json']}")
    return 0


def add_parsers(sub) -> None:
    """Imports nothing heavy: `mdm-lens --help` stays torch-free."""
    p = sub.add_parser("demo", help="the whole toolkit on the embedded tiny-if organism (offline)",
                       description="Fit every estimator, choose λ, score with the IFEval checkers, compose two maps "
                       "and measure per-step effects; writes a report folder.")
    p.add_argument("--out", default="mdm-lens-demo", help="report folder")
    p.add_argument("--model", default="tiny-if", help="packaged organism name, hub id or local folder")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--seed", type=int, default=0, help="seed for prompt sampling and generation")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("experiment", help="the OT-steering paper's IFEval protocol",
                       description="Per task: fit each method on calibration pairs, choose λ on validation "
                       "prompts, score test prompts; writes result.json, rows.csv, radar.png and bars.png.")
    p.add_argument("--model", required=True, help="hub id, local folder in hub layout, or a packaged organism name")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--tasks", default="organism",
                   help="'organism' (the tiny-if constraints) or a single-instruction IFEval jsonl file")
    p.add_argument("--instruction-id", action="append", default=[],
                   help="keep only this IFEval instruction id; repeat for several (default: all in the file)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="steering methods compared")
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0],
                   help="strengths tried on the validation prompts")
    p.add_argument("--n-calib", dest="n_calib", type=int, default=128, help="calibration pairs per task")
    p.add_argument("--n-val", dest="n_val", type=int, default=10, help="validation prompts per task")
    p.add_argument("--n-test", dest="n_test", type=int, default=64, help="test prompts per task")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16, help="prompts generated per batch")
    p.add_argument("--seed", type=int, default=0, help="seed for splits and generation")
    for key, help_ in (("gen_length", "response length in tokens"), ("steps", "denoising steps"),
                       ("block_length", "semi-autoregressive block length")):
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=int,
                       help=help_ + " (default: the family's recommended setting)")
    from .cli import _fast_options       # stdlib-only, like this module
    _fast_options(p)
    p.set_defaults(func=cmd_experiment)
