"""`mdm-lens demo` and `mdm-lens experiment` subcommands."""

from __future__ import annotations

import argparse
import os
import sys

# analyses.studies.experiment.METHODS, spelled here so that building the parser imports no torch (a test holds them equal)
SAMPLERS = ("reference", "fast")  # mdm_lens.fast_path.SAMPLERS
CACHES = ("prefix", "dual")  # mdm_lens.sampling.llada_cached.CACHES[1:]
METHODS = (
    "none",
    "directional_ablation",
    "mean_act",
    "actadd",
    "gaussian_ot",
    "linear_act",
    "bures_ot",
    "linear_act_t",
)


def cmd_demo(args) -> int:
    from ..studies.demo import run_demo, table

    try:
        summary = run_demo(args.out, model_name=args.model, quick=args.quick, seed=args.seed)
    except KeyboardInterrupt:  # one line, no traceback: every finished generation is on disk and is reused
        print(
            f"\ninterrupted; the generations so far are kept in {args.out}. Resume: {resume_command()}", file=sys.stderr
        )
        return 130
    print(table(summary))
    print(
        f"\nreport written to {os.path.abspath(args.out)}\n(summary.md, summary.json, CSV and PNG "
        f"figures; all {summary['generations']} generations in generations.jsonl); {summary['seconds']:.0f} s"
    )
    return 0


def cmd_experiment(args) -> int:
    import time

    from mdm_lens import HookedMDM

    from ..studies.experiment import ExperimentConfig, run_experiment, write_result
    from ..studies.runlog import dist_env
    from ..studies.tasks import ifeval_tasks, organism_tasks

    t0 = time.time()
    rank, world = dist_env()
    device = args.device or ("cuda" if world > 1 and _cuda() else None)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    model = HookedMDM.from_pretrained(args.model, device=device)
    if args.tasks == "organism":
        from analyses.studies.organism import corpus_for

        corpus = corpus_for(model.config)
        ALL = corpus.KINDS
        unknown = sorted(set(args.instruction_id) - set(ALL))
        if unknown:
            raise ValueError(f"--instruction-id {unknown}: not an organism constraint; choose from {list(ALL)}")
        kinds = list(args.instruction_id) or list(corpus.DEMO_KINDS)
        tasks = organism_tasks(kinds, args.n_calib, args.n_val, args.n_test, args.seed, corpus)
    else:
        tasks = ifeval_tasks(
            args.tasks, args.n_calib, args.n_val, args.n_test, args.seed, instruction_ids=args.instruction_id or None
        )
    sampler = {
        k: v
        for k, v in (
            ("gen_length", args.gen_length),
            ("steps", args.steps),
            ("block_length", args.block_length),
            ("cache", args.cache),
            ("threshold", args.threshold),
        )
        if v is not None
    }
    if args.sampler != "reference":  # recorded in the run config (and its hash) like every sampler option
        sampler["sampler"] = args.sampler
    cfg = ExperimentConfig(
        lambdas=tuple(args.lambdas),
        n_calib=args.n_calib,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        sampler=sampler,
        batch_size=args.batch_size,
        methods=tuple(args.methods),
        mc_num=args.mc_num,
        mc_batch=min(args.mc_batch, args.mc_num),
        max_degenerate=args.max_degenerate,
        max_nll_increase=args.max_nll_increase,
    )
    try:
        result = run_experiment(model, tasks, cfg, out=args.out, model_name=args.model, rank=rank, world=world)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; the generations so far are kept in {os.path.join(args.out, 'generations.jsonl')}. "
            f"Resume with the same command: {resume_command()}",
            file=sys.stderr,
        )
        return 130
    if rank != 0:
        return 0
    paths = write_result(result, args.out)
    for m, s in result["summary"].items():
        nll = "-" if s["nll"] is None else f"{s['nll']:.3f}"
        print(
            f"{m:<22} {100 * s['accuracy']:5.1f}%  [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]  "
            f"NLL {nll}  degenerate {100 * s['degenerate']:.0f}%"
        )
    from ..studies.experiment_plots import method_label
    from ..studies.verdicts import ifeval_verdicts
    from ..studies.verdicts_terminal import verdict_block

    verdicts = ifeval_verdicts(result["summary"], method_label)  # the rows of summary.md's ### Verdict
    print("\n".join(verdict_block(verdicts, "IFEval", "strict accuracy", "no steering")))
    print(f"result: {paths['json']}; report: {paths['md']}; {world} process(es), {time.time() - t0:.0f} s")
    return 0


def resume_command() -> str:
    """The command line that was run (re-running it with the same --out resumes)."""
    import shlex

    return "mdm-lens " + shlex.join(sys.argv[1:])


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def add_parsers(sub) -> None:
    """Imports nothing heavy: `mdm-lens --help` stays torch-free."""
    p = sub.add_parser(
        "demo",
        help="the three seed papers on the embedded organism (offline)",
        description="IFEval OT steering (every estimator and per-timestep Linear-ACT, λ chosen on "
        "validation, accuracy beside damage, two maps composed, per-step effects), refusal ablation "
        "with its layer × role × scope sweep, and ILRR sentiment alignment; writes a report "
        "folder with summary.md, summary.json, generations.jsonl and figures.",
    )
    p.add_argument("--out", default="mdm-lens-demo", help="report folder")
    p.add_argument(
        "--model",
        default=None,
        help="packaged organism name, hub id or local folder "
        "(default: tiny-mdm, or tiny-if where tiny-mdm is not packaged)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--seed", type=int, default=0, help="seed for prompt sampling and generation")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "experiment",
        help="the OT-steering paper's IFEval protocol",
        description="Per task: fit each method on calibration pairs, choose λ on validation "
        "prompts, score test prompts; every generation with its damage (NLL under the unsteered "
        "model, degeneracy) goes to OUT/generations.jsonl. Re-running with the same --out resumes; "
        "under `accelerate launch --no_python --num_processes N mdm-lens experiment ...` the work is "
        "sharded over N processes and merged into one result. Writes result.json, rows.csv, "
        "summary.md, methods.png, constraints.png.",
    )
    p.add_argument("--model", required=True, help="hub id, local folder in hub layout, or a packaged organism name")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--tasks",
        default="organism",
        help="'organism' (the tiny-if constraints) or a single-instruction IFEval jsonl file",
    )
    p.add_argument(
        "--instruction-id",
        action="append",
        default=[],
        help="keep only this instruction id (IFEval file or organism constraint); repeat for several; "
        "none given keeps all",
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="steering methods compared")
    p.add_argument(
        "--lambdas",
        type=float,
        nargs="+",
        default=[0.1, 0.25, 0.5, 0.75, 1.0],
        help="strengths tried on the validation prompts; a λ chosen at an edge is warned about in the "
        "report (widen the grid, above 1 where a behaviour is induced)",
    )
    p.add_argument("--n-calib", dest="n_calib", type=int, default=128, help="calibration pairs per task")
    p.add_argument("--n-val", dest="n_val", type=int, default=10, help="validation prompts per task")
    p.add_argument("--n-test", dest="n_test", type=int, default=64, help="test prompts per task")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16, help="prompts generated per batch")
    p.add_argument("--seed", type=int, default=0, help="seed for splits and generation")
    p.add_argument(
        "--device",
        default=None,
        help="torch device (default: cpu; cuda:LOCAL_RANK per process when "
        "launched with several processes on a GPU box)",
    )
    p.add_argument(
        "--mc-num",
        dest="mc_num",
        type=int,
        default=16,
        help="Monte-Carlo rows per damage NLL estimate (LLaDA likelihood; the reference uses 128)",
    )
    p.add_argument(
        "--mc-batch",
        dest="mc_batch",
        type=int,
        default=8,
        help="rows per Monte-Carlo mini-batch (mc-num must be a multiple)",
    )
    p.add_argument(
        "--max-degenerate",
        dest="max_degenerate",
        type=float,
        default=0.5,
        help="λ selection: drop strengths whose validation texts are degenerate more often than this "
        "share (or the unsteered share, if higher)",
    )
    p.add_argument(
        "--max-nll-increase",
        dest="max_nll_increase",
        type=float,
        default=None,
        help="λ selection: drop strengths whose mean validation NLL exceeds the unsteered one by more "
        "than this many nats/token (default: no NLL cap)",
    )
    for key, help_ in (
        ("gen_length", "response length in tokens"),
        ("steps", "denoising steps"),
        ("block_length", "semi-autoregressive block length"),
    ):
        p.add_argument(
            "--" + key.replace("_", "-"),
            dest=key,
            type=int,
            help=help_ + " (default: the family's recommended setting)",
        )
    fast_options(p)
    p.set_defaults(func=cmd_experiment)


def fast_options(p: argparse.ArgumentParser) -> None:
    """--sampler / --cache / --threshold, shared by `generate` and `experiment`."""
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="reference",
        help="'fast': Fast-dLLM's KV-cached sampler (approximate; docs/fast_sampling.md)",
    )
    p.add_argument("--cache", choices=CACHES, default=None, help="KV cache of --sampler fast (default: dual)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="--sampler fast: confidence threshold for parallel decoding, e.g. 0.9 (default: none, a "
        "fixed number of tokens per step)",
    )
