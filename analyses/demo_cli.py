"""`mdm-lens demo` and `mdm-lens experiment` subcommands."""
from __future__ import annotations

import os


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
                                 ("block_length", args.block_length)) if v is not None}
    cfg = ExperimentConfig(lambdas=tuple(args.lambdas), n_calib=args.n_calib, n_val=args.n_val, n_test=args.n_test,
                           seed=args.seed, sampler=sampler, batch_size=args.batch_size,
                           methods=tuple(args.methods) if args.methods else ExperimentConfig().methods)
    result = run_experiment(model, tasks, cfg)
    paths = write_result(result, args.out)
    for m, s in result["summary"].items():
        print(f"{m:<22} {100 * s['accuracy']:5.1f}%  [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]")
    print(f"result: {paths['json']}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="the whole toolkit on the embedded tiny-if organism (offline)")
    p.add_argument("--out", default="mdm-lens-demo")
    p.add_argument("--model", default="tiny-if")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("experiment", help="the OT-steering paper's IFEval protocol")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", default="organism",
                   help="'organism' or a single-instruction IFEval jsonl (e.g. shared/ifeval/ifeval_single_instr_format.jsonl)")
    p.add_argument("--instruction-id", action="append", default=[])
    p.add_argument("--methods", nargs="*")
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--n-calib", dest="n_calib", type=int, default=128)
    p.add_argument("--n-val", dest="n_val", type=int, default=10)
    p.add_argument("--n-test", dest="n_test", type=int, default=64)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-length", dest="gen_length", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--block-length", dest="block_length", type=int)
    p.set_defaults(func=cmd_experiment)
