"""mdm-lens: interpretability and optimal-transport steering for masked diffusion language models."""

# The console entry sits on the top floor of the house (analyses -> interventions -> mdm_lens), so it may call
# all three. Building the parser imports only the standard library: `--help` answers before torch loads, and
# each command imports what it runs. Choices that the library also defines are spelled here once more (importing
# their modules would load torch); tests/test_cli_help.py holds each copy equal to its source.
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")
SCOPES = ("all", "prompt", "response", "masked", "predicts_masked", "padding")  # mdm_lens.context.SCOPES
ESTIMATORS = (
    "directional_ablation",
    "actadd",
    "mean_act",
    "gaussian_ot",
    "linear_act",
    "bures_ot",
    "projection_clamp",
)  # interventions.ESTIMATORS
ROLES = (
    "resid_pre",
    "attn_out",
    "resid_mid",
    "mlp_pre",
    "mlp_pre_linear",
    "mlp_post",
    "mlp_out",
    "resid_post",
)  # mdm_lens.sites.LAYER_ROLES
KINDS = (
    "change_case:english_lowercase",
    "change_case:english_capital",
    "punctuation:no_comma",
    "keywords:existence",
    "keywords:forbidden_words",
    "startend:end_checker",
    "detectable_format:number_bullet_lists",
    "detectable_format:title",
)  # organism corpus KINDS
REMASKING = ("low_confidence", "random")  # mdm_lens.sampling.llada
DREAM_ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")  # mdm_lens.sampling.dream
BENCHMARKS = ("sampler", "steer", "fit", "fast", "attn", "sae", "view", "load", "threads")
from .demo import CACHES, SAMPLERS  # noqa: E402, F401  (stdlib-only copies, held equal to the library by tests)
from .options import deprecated_alias  # noqa: E402

LENS_POSITIONS = ("all", "text")  # analyses.logit_lens.POSITIONS


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; not for required options, nor where the default is None
    (the help text then says what happens when the option is left out)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default is None or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


# ---------------------------------------------------------------------------------------------- core commands
def _load(args):
    import torch

    from mdm_lens import HookedMDM

    dtype = getattr(torch, args.dtype) if args.dtype else None
    return HookedMDM.from_pretrained(args.model, dtype=dtype, device=args.device)


def cmd_sites(args) -> int:
    model = _load(args)
    for name in model.hook_names:
        s = model.site(name)
        print(f"{name}\t{s.width}\t{s.module_path}:{s.kind}")
    return 0


SAMPLER_OPTIONS = (
    ("gen_length", int, "response length in tokens (LLaDA)"),
    ("max_new_tokens", int, "response length in tokens (Dream)"),
    ("steps", int, "denoising steps"),
    ("block_length", int, "semi-autoregressive block length (LLaDA)"),
    ("temperature", float, "sampling temperature (0: greedy)"),
    ("remasking", str, "which masked positions are decoded first (LLaDA)"),
    ("alg", str, "decoding order (Dream)"),
)


def cmd_generate(args) -> int:
    plan_path = getattr(args, "plan", None)
    if plan_path is not None and not Path(plan_path).is_file():  # refused before the model loads
        raise FileNotFoundError(f"--plan {plan_path}: no such file (a plan saved by interventions.Plan.save)")
    model = _load(args)
    overrides = {k: getattr(args, k) for k, _, _ in SAMPLER_OPTIONS if getattr(args, k) is not None}
    overrides.update({k: getattr(args, k) for k in ("cache", "threshold") if getattr(args, k) is not None})
    plan = None
    if plan_path is not None:
        from interventions import Plan

        plan = Plan.load(plan_path).strength(args.strength)
    out = model.generate(
        args.prompt, seed=args.seed, chat=not args.no_chat, progress=True, sampler=args.sampler, plan=plan, **overrides
    )
    for prompt, text in zip(args.prompt, out.texts):
        row = {"prompt": prompt, "response": text}
        if plan is not None:
            row.update(plan=plan_path, strength=args.strength)
        print(json.dumps(row))
    return 0


def cmd_bench(args) -> int:
    if args.what == "fast":
        from analyses.bench.steering import linear_act_everywhere
        from analyses.bench.fast import run_fast_bench

        results = run_fast_bench(
            model=args.model,
            gen_length=args.gen_length or 256,
            block_length=args.block_length,
            steps=args.steps,
            prompt_len=args.prompt_len or 64,
            threshold=args.threshold,
            repeats=args.repeats,
            device=args.device,
            dtype=args.dtype,
            steer=linear_act_everywhere,
        )
        return _print_json(results, args.json)
    if args.what == "attn":
        from analyses.bench.attn import run_attn_bench

        return _print_json(
            run_attn_bench(model=args.model, seq=args.prompt_len or 256, batch=args.batch, repeats=args.repeats),
            args.json,
        )
    if args.what == "sae":
        from analyses.bench.sae import run_sae_bench

        return _print_json(
            run_sae_bench(
                model=args.model,
                gen_length=args.gen_length or 32,
                steps=args.steps or 32,
                prompt_len=args.prompt_len or 16,
                batch=args.batch,
                repeats=args.repeats,
                device=args.device,
            ),
            args.json,
        )
    if args.what == "view":  # the trace viewer's file size and Chromium render time (analyses.bench.view)
        from analyses.bench.view import run_view_bench

        return _print_json(run_view_bench(args.model, args.gen_length or 256, args.steps or 256), args.json)
    if args.what == "load":  # peak RSS of a bf16 load / weight bytes, anon vs file pages (analyses.bench.load)
        from analyses.bench.load import run_load_cli

        return _print_json(run_load_cli(args.model), args.json)
    if args.what == "threads":  # OpenMP wait policy / thread count beside busy processes (analyses.bench.threads)
        from analyses.bench.threads import run_threads_bench

        gen, steps = args.gen_length or 16, args.steps or 16
        got = run_threads_bench(args.model, args.prompts, gen, steps, args.load, args.repeats)
        return _print_json(got, args.json)
    if args.what == "sampler":
        from analyses.bench.sampler import run_sampler_bench as run
    else:
        from analyses.bench.steering import run_bench as run
    results = run(
        args.what,
        model=args.model,
        gen_length=args.gen_length or 32,
        steps=args.steps or 32,
        prompt_len=args.prompt_len or 16,
        batch=args.batch,
        repeats=args.repeats,
    )
    return _print_json(results, args.json)


def _print_json(results: dict, path: str | None) -> int:
    text = json.dumps(results, indent=2)
    print(text)
    if path:
        from mdm_lens.safefile import write_text_atomic  # here: --help stays torch-free

        write_text_atomic(text, path)
    return 0


# ---------------------------------------------------------------------------------------------- analyses
def _setup(args):
    from mdm_lens import HookedMDM
    from mdm_lens.collect import collect_contrastive

    model = HookedMDM.from_pretrained(args.model)
    if args.source and args.target:
        read = lambda p: [x.strip() for x in Path(p).read_text().splitlines() if x.strip()]  # noqa: E731
        src_p, tgt_p = read(args.source), read(args.target)
    else:
        from analyses.studies.organism import corpus_for

        src_p, tgt_p = corpus_for(model.config).calibration_pairs(args.instruction_id, args.n, args.seed)
    return model, src_p, tgt_p, collect_contrastive


def _fit_plan(args, src, tgt, sites):
    from interventions import Plan, fit_map

    return Plan({s: fit_map(args.estimator, src[s], tgt[s], site=s) for s in sites})


def cmd_moments(args) -> int:
    from mdm_lens import get_act_name

    from ..moments import moment_mismatch
    from ..records import write_records

    model, src_p, tgt_p, collect_contrastive = _setup(args)
    sites = [get_act_name(args.role, l) for l in range(model.n_layers)]
    if len(src_p) < 4:
        raise ValueError(
            f"{len(src_p)} contrastive pairs: moments need at least 4 (half fit the maps, half are held out); raise --n"
        )
    half = len(src_p) // 2  # fit on the first half, measure also on the unseen second half
    src, tgt = collect_contrastive(model, src_p[:half], tgt_p[:half], sites)
    src_h, tgt_h = collect_contrastive(model, src_p[half:], tgt_p[half:], sites)
    rep = moment_mismatch(src, tgt, sites, held_out=(src_h, tgt_h))
    write_records(args.out, "moments", rep.records)
    what = f"{Path(args.source).name} → {Path(args.target).name}" if args.source else f"{args.instruction_id} pairs"
    rep.plot(os.path.join(args.out, "moments.png"), title=f"{args.model} · {args.role} of every layer · {what}")
    print(f"wrote {args.out}/moments.csv, moments.json, moments.png")
    return 0


def cmd_effects(args) -> int:
    from mdm_lens import get_act_name

    from ..effects import step_effects
    from ..records import write_records

    model, src_p, tgt_p, collect_contrastive = _setup(args)
    sites = [get_act_name(role, l) for l in range(model.n_layers) for role in ("mlp_pre", "mlp_out")]
    src, tgt = collect_contrastive(model, src_p, tgt_p, sites)
    plan = _fit_plan(args, src, tgt, sites).strength(args.strength)
    eff = step_effects(model, tgt_p[: args.n_eval], plan, seed=args.seed)
    write_records(args.out, "effects", eff.records)
    eff.plot(os.path.join(args.out, "effects.png"))
    print(f"wrote {args.out}/effects.csv, effects.json, effects.png")
    return 0


def cmd_sweep(args) -> int:
    from ..records import write_records
    from ..sweep import layer_sweep, resolve_metric, sweep_sites

    from_files = bool(args.source or args.target)
    if from_files and not (args.source and args.target):
        raise ValueError("give both --source and --target (files of prompts, one a line), or neither")
    if from_files and not args.metric:
        raise ValueError(
            "prompts from --source/--target files need --metric (an IFEval instruction id, 'refusal', "
            "'sentiment' or 'module:function'): the organism's --instruction-id checks only fit its own prompts"
        )
    kwargs = json.loads(args.metric_kwargs) if args.metric_kwargs else None
    name, metric = resolve_metric(args.metric, kwargs) if args.metric else (None, None)  # refused before loading
    model, src_p, tgt_p, collect_contrastive = _setup(args)
    sites = sweep_sites(model, args.roles)
    src, tgt = collect_contrastive(model, src_p, tgt_p, sites)
    factory = functools.partial(_fit_plan, args, src, tgt)
    if from_files:
        prompts, what = tgt_p[: args.n_eval], f"target prompts of {Path(args.target).name}"
    else:
        from analyses.studies.organism import corpus_for

        from .. import ifeval

        items = corpus_for(model.config).eval_items(args.instruction_id, args.n_eval, "val", args.seed)
        prompts, what = [e.prompt for e in items], f"{args.instruction_id} validation prompts"
        if metric is None:
            name = f"{args.instruction_id} strict pass rate"

            def metric(texts):
                return sum(
                    all(ifeval.check(t, e.instruction_id_list, e.kwargs))  # noqa: E731
                    for t, e in zip(texts, items)
                ) / len(items)

    print(
        f"steered and scored: {len(prompts)} {what} (the map is fitted source → target and applied while "
        f"generating from these); metric: {name}"
    )
    res = layer_sweep(
        model, factory, prompts, metric, roles=args.roles, scopes=args.scopes, lambdas=args.lambdas, seed=args.seed
    )
    write_records(args.out, "sweep", [{**r, "baseline": res.baseline, "metric": name} for r in res.records])
    from mdm_lens.safefile import write_text_atomic

    write_text_atomic(
        "".join(json.dumps(g) + "\n" for g in res.generations), os.path.join(args.out, "sweep_generations.jsonl")
    )
    title = (
        f"{args.model} · {args.estimator} map per site, fit on "
        + (f"{Path(args.source).name} → {Path(args.target).name}" if from_files else f"{args.instruction_id} pairs")
        + f" · scored on {len(prompts)} {what}"
    )
    res.plot(os.path.join(args.out, "sweep.png"), metric=name, title=title)
    print(
        f"metric: {name}; baseline {res.baseline:.3f} (unsteered, the same prompts); wrote {args.out}/sweep.csv, "
        "sweep.json, sweep.png and every scored text in sweep_generations.jsonl"
    )
    return 0


def cmd_lens(args) -> int:
    from ..logit_lens import layer_summary, logit_lens
    from ..records import write_records

    model = _load(args)
    overrides = {k: getattr(args, k) for k, _, _ in SAMPLER_OPTIONS if getattr(args, k) is not None}
    res = logit_lens(
        model,
        args.prompt,
        at_steps=args.at_steps,
        layers=args.layers,
        positions=args.positions,
        seed=args.seed,
        chat=not args.no_chat,
        progress=True,
        **overrides,
    )
    write_records(args.out, "lens", res.records)
    write_records(args.out, "lens_first_top1", res.first_top1)
    write_records(args.out, "lens_grid", res.grid)
    write_records(args.out, "lens_layers", layer_summary(res))
    res.plot(os.path.join(args.out, "lens.png"))
    for row in layer_summary(res):
        print(json.dumps(row))
    print(f"wrote {args.out}/lens.{{csv,json}}, lens_first_top1.*, lens_grid.*, lens_layers.*, lens.png")
    return 0


# ---------------------------------------------------------------------------------------------- parser
def _model_options(p: argparse.ArgumentParser, default: str | None = None, dtype: bool = False) -> None:
    p.add_argument(
        "--model",
        required=default is None,
        default=default,
        help="hub id, local folder in hub layout, or a packaged organism name (e.g. tiny-if)",
    )
    if dtype:
        p.add_argument("--dtype", choices=DTYPES, default=None, help="weight dtype (default: the checkpoint's)")
        p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cpu)")


def _sampler_options(p: argparse.ArgumentParser) -> None:
    """--seed, --no-chat and every sampler setting, each defaulting to the family's recommended value."""
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--no-chat", action="store_true", help="do not apply the chat template")
    choices = {"remasking": REMASKING, "alg": DREAM_ALGS}
    for key, typ, help_ in SAMPLER_OPTIONS:
        p.add_argument(
            "--" + key.replace("_", "-"),
            dest=key,
            type=typ,
            default=None,
            choices=choices.get(key),
            help=help_ + " (default: the family's recommended setting)",
        )


def _contrastive_options(p: argparse.ArgumentParser) -> None:
    _model_options(p, default="tiny-if")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--instruction-id",
        dest="instruction_id",
        choices=KINDS,
        default=KINDS[0],
        help="organism constraint whose prompts without / with it form the contrastive sets",
    )
    deprecated_alias(p, "--kind", "--instruction-id", "instruction_id", choices=KINDS)
    p.add_argument(
        "--source",
        help="file of source prompts, one a line; with --target it replaces "
        "--instruction-id (default: prompts from --instruction-id)",
    )
    p.add_argument(
        "--target",
        help="file of target prompts, one a line; with --source it replaces "
        "--instruction-id (default: prompts from --instruction-id)",
    )
    p.add_argument("--n", type=int, default=32, help="contrastive pairs drawn from the organism corpus")
    p.add_argument("--seed", type=int, default=0, help="seed for prompt sampling and generation")


def _add_sites(sub) -> None:
    p = sub.add_parser(
        "sites",
        help="list the canonical hook sites of a model",
        description="Print one line per hook site: canonical name, width, module path and tensor kind.",
    )
    _model_options(p, dtype=True)
    p.set_defaults(func=cmd_sites)


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate with the family's reference sampler",
        description="One JSON line per prompt. Sampler options left out take the family's recommended settings.",
    )
    _model_options(p, dtype=True)
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat the option for a batch")
    _sampler_options(p)
    from .demo import fast_options

    fast_options(p)
    p.add_argument(
        "--plan", default=None, help="steer with this plan file (interventions.Plan.save; default: unsteered)"
    )
    p.add_argument("--strength", type=float, default=1.0, help="λ of --plan: 0 no steering, 1 the fitted map")
    p.set_defaults(func=cmd_generate)


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="overhead benchmarks: ratios measured in one run, as JSON",
        description="sampler: wrapper and no-op hooks vs the bare model; steer: hooked and folded "
        "Linear-ACT vs unsteered; fit: Bures OT fit at d=4096; fast: LLaDA's reference sampler vs "
        "Fast-dLLM's prefix / dual cache / dual cache + threshold (speedup, FLOPs ratio) and "
        "Linear-ACT on every layer on the fast path (hooked_ratio); attn: SDPA vs the eager path when attention "
        "patterns are hooked; sae: a 16x Top-K SAE spliced at every step vs unsteered, and SAE training "
        "activations/s; load: peak RSS of a bf16 load over the weight bytes (--model a folder or llada/mid, "
        "llada/8b, llada2/mini); "
        "threads: a tiny-mdm generation unloaded and beside busy processes under torch's default "
        "OpenMP threads, OMP_WAIT_POLICY=PASSIVE and one thread. On a GPU: mdm-lens bench fast "
        "--device cuda --dtype bfloat16 --repeats 3 (docs/fast_sampling.md).",
    )
    p.add_argument("what", choices=BENCHMARKS, help="which benchmark")
    p.add_argument(
        "--model",
        default=None,
        help="model to time (default: a tiny and a mid-size random LLaDA; fast: the mid-size one)",
    )
    p.add_argument(
        "--gen-length",
        dest="gen_length",
        type=int,
        default=None,
        help="response length in tokens (default: 32; fast: 256)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: 32; fast: gen-length, one token per step)"
    )
    p.add_argument(
        "--prompt-len",
        dest="prompt_len",
        type=int,
        default=None,
        help="random prompt length in tokens (default: 16; fast: 64; attn: the sequence length, 256)",
    )
    p.add_argument("--block-length", dest="block_length", type=int, default=32, help="block length (fast)")
    p.add_argument("--threshold", type=float, default=0.9, help="confidence threshold of the last variant (fast)")
    p.add_argument("--device", default=None, help="torch device (fast; default: cpu)")
    p.add_argument("--dtype", choices=DTYPES, default=None, help="weight dtype (fast; default: float32)")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (the median is reported)")
    p.add_argument("--load", type=int, default=2, help="busy competing processes started for the loaded runs (threads)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per timed generation (threads)")
    p.add_argument("--json", default=None, help="also write the JSON to this file (default: stdout only)")
    p.set_defaults(func=cmd_bench)


def _add_moments(sub) -> None:
    p = sub.add_parser(
        "moments",
        help="moment mismatch per layer, per estimator",
        description="How far each estimator's transported source moments land from the target's.",
    )
    _contrastive_options(p)
    p.add_argument("--role", dest="role", choices=ROLES, default="mlp_out", help="site role measured in every layer")
    deprecated_alias(p, "--hook-point", "--role", "role", choices=ROLES)
    p.set_defaults(func=cmd_moments)


def _add_effects(sub) -> None:
    p = sub.add_parser(
        "effects",
        help="per-timestep effects of a fitted plan",
        description="Fit a plan on the mlp_pre and mlp_out sites of every layer and measure what it "
        "changes at every denoising step.",
    )
    _contrastive_options(p)
    p.add_argument("--n-eval", dest="n_eval", type=int, default=8, help="target prompts generated and compared")
    p.add_argument("--estimator", choices=ESTIMATORS, default="linear_act", help="steering rule to fit")
    p.add_argument("--strength", type=float, default=1.0, help="λ: 0 no steering, 1 the fitted map")
    p.set_defaults(func=cmd_effects)


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="layer × role × scope × λ sensitivity sweep",
        description="Fit a map from the --source to the --target activations, steer one layer and "
        "role at a time while generating from the TARGET prompts (with --instruction-id: that "
        "constraint's validation prompts), and score those generations with --metric (default with "
        "--instruction-id: the organism's IFEval checks of that constraint); the baseline is the same "
        "prompts unsteered. Prompts from --source/--target files need --metric. Every scored text goes "
        "to OUT/sweep_generations.jsonl.",
    )
    _contrastive_options(p)
    p.add_argument(
        "--metric",
        default=None,
        help="what a cell's generations score: an IFEval instruction id (e.g. "
        "change_case:english_lowercase), 'refusal', 'sentiment' (VADER) or 'module:function' taking the "
        "list of texts (default: the --instruction-id constraint's checks; required with --source/--target)",
    )
    p.add_argument(
        "--metric-kwargs",
        dest="metric_kwargs",
        default=None,
        help='JSON kwargs of an IFEval instruction id metric, e.g. \'{"keywords": ["cat"]}\' (default: none, '
        "for ids that take no kwargs)",
    )
    p.add_argument("--n-eval", dest="n_eval", type=int, default=8, help="prompts generated per cell")
    p.add_argument("--estimator", choices=ESTIMATORS, default="linear_act", help="steering rule to fit")
    p.add_argument(
        "--roles",
        dest="roles",
        nargs="+",
        choices=ROLES,
        default=["resid_post", "mlp_out"],
        help="site roles swept in every layer",
    )
    deprecated_alias(p, "--hook-points", "--roles", "roles", nargs="+", choices=ROLES)
    p.add_argument("--scopes", nargs="+", choices=SCOPES, default=["all"], help="token scopes swept")
    p.add_argument("--lambdas", type=float, nargs="+", default=[1.0], help="strengths swept")
    p.set_defaults(func=cmd_sweep)


def _add_lens(sub) -> None:
    p = sub.add_parser(
        "lens",
        help="logit lens at every denoising step: layer × step heatmap",
        description="Generate once with the decode trace, then read each chosen layer's resid_post "
        "through the final norm and unembedding at the positions still masked at each chosen step, "
        "and compare with the token each position finally receives. Writes lens.csv/json (one row "
        "per step, layer, position), lens_first_top1.*, lens_grid.*, lens_layers.* and lens.png.",
    )
    _model_options(p, default="tiny-if", dtype=True)
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat the option for a batch")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--at-steps",
        dest="at_steps",
        type=int,
        nargs="+",
        default=None,
        help="denoising steps read by the lens (default: every step)",
    )
    p.add_argument("--layers", type=int, nargs="+", default=None, help="layers read by the lens (default: all)")
    p.add_argument(
        "--positions",
        choices=LENS_POSITIONS,
        default="all",
        help="response positions read: all, or only up to the first stop token (text)",
    )
    _sampler_options(p)
    p.set_defaults(func=cmd_lens)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdm-lens", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=HelpFormatter),
    )

    _add_sites(sub)
    _add_generate(sub)
    _add_bench(sub)
    _add_moments(sub)
    _add_effects(sub)
    _add_sweep(sub)
    _add_lens(sub)
    from .demo import add_parsers  # stdlib-only at import time, like this module

    add_parsers(sub)
    from . import sae as sae_cli  # stdlib-only at import time too

    sae_cli.add_parser(sub)
    from .view import add_parser as add_view_parser  # `mdm-lens view` (analyses.view), torch-free too

    add_view_parser(sub, _model_options, _sampler_options, [k for k, _, _ in SAMPLER_OPTIONS])
    return parser


def main(argv: list[str] | None = None) -> int:
    from .omp import prefer_passive_wait  # before any subcommand imports torch (analyses/cli/omp.py says why)

    prefer_passive_wait()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        print(f"mdm-lens {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
