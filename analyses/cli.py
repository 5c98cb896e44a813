"""`mdm-lens sweep`, `mdm-lens moments`, `mdm-lens effects`: CSV/JSON + PNG into an output folder.

Contrastive prompt sets come from the organism corpus (`--kind`) or two text files (one prompt a line)."""
from __future__ import annotations

import json
import os


def _prompt_sets(args) -> tuple[list[str], list[str]]:
    if args.source and args.target:
        read = lambda p: [x.strip() for x in open(p) if x.strip()]   # noqa: E731
        return read(args.source), read(args.target)
    from mdm_lens.organism.corpus import calibration_pairs
    return calibration_pairs(args.kind, args.n, args.seed)


def _write(out: str, name: str, records: list[dict]) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(records, f, indent=2, default=str)
    cols = list(dict.fromkeys(k for r in records for k in r if k != "traceback"))
    with open(os.path.join(out, f"{name}.csv"), "w") as f:
        f.write(",".join(cols) + "\n")
        for r in records:
            f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")


def _setup(args):
    from mdm_lens import HookedMDM

    from .collect import collect_contrastive
    model = HookedMDM.from_pretrained(args.model)
    src_p, tgt_p = _prompt_sets(args)
    return model, src_p, tgt_p, collect_contrastive


def cmd_moments(args) -> int:
    from .moments import moment_mismatch
    model, src_p, tgt_p, collect_contrastive = _setup(args)
    sites = [f"blocks.{l}.{args.hook}" for l in range(model.n_layers)]
    src, tgt = collect_contrastive(model, src_p, tgt_p, sites)
    rep = moment_mismatch(src, tgt, sites)
    _write(args.out, "moments", rep.records)
    rep.plot(os.path.join(args.out, "moments.png"))
    print(f"wrote {args.out}/moments.csv, moments.json, moments.png")
    return 0


def cmd_effects(args) -> int:
    from interventions import Plan, fit_map

    from .effects import step_effects
    model, src_p, tgt_p, collect_contrastive = _setup(args)
    sites = [f"blocks.{l}.{s}" for l in range(model.n_layers) for s in ("mlp.hook_pre", "mlp.hook_out")]
    src, tgt = collect_contrastive(model, src_p, tgt_p, sites)
    plan = Plan({s: fit_map(args.estimator, src[s], tgt[s], site=s) for s in sites}).strength(args.strength)
    eff = step_effects(model, tgt_p[: args.n_eval], plan, seed=args.seed)
    _write(args.out, "effects", eff.records)
    eff.plot(os.path.join(args.out, "effects.png"))
    print(f"wrote {args.out}/effects.csv, effects.json, effects.png")
    return 0


def cmd_sweep(args) -> int:
    from interventions import Plan, fit_map

    from .sweep import HOOK_POINTS, layer_sweep
    model, src_p, tgt_p, collect_contrastive = _setup(args)
    sites = [f"blocks.{l}.{HOOK_POINTS[p]}" for l in range(model.n_layers) for p in args.hook_points]
    src, tgt = collect_contrastive(model, src_p, tgt_p, sites)
    factory = lambda ss: Plan({s: fit_map(args.estimator, src[s], tgt[s], site=s) for s in ss})  # noqa: E731
    if args.kind:
        from mdm_lens.organism.corpus import eval_items

        from . import ifeval
        items = eval_items(args.kind, args.n_eval, "val", args.seed)
        prompts = [e.prompt for e in items]
        metric = lambda texts: sum(all(ifeval.check(t, e.instruction_id_list, e.kwargs)) for t, e in zip(texts, items)) / len(items)  # noqa: E731
    else:
        from .refusal import refusal_rate
        prompts, metric = tgt_p[: args.n_eval], refusal_rate
    res = layer_sweep(model, factory, prompts, metric, hook_points=args.hook_points, scopes=args.scopes,
                      lambdas=args.lambdas, seed=args.seed)
    _write(args.out, "sweep", res.records + [{"baseline": res.baseline}])
    res.plot(os.path.join(args.out, "sweep.png"))
    print(f"baseline {res.baseline:.3f}; wrote {args.out}/sweep.csv, sweep.json, sweep.png")
    return 0


def add_parsers(sub) -> None:
    for name, fn, help_ in (("sweep", cmd_sweep, "layer × hook point × scope × λ sensitivity sweep"),
                            ("moments", cmd_moments, "moment mismatch per layer, per estimator"),
                            ("effects", cmd_effects, "per-timestep effects of a fitted plan")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--model", default="tiny-if")
        p.add_argument("--out", required=True)
        p.add_argument("--kind", default="change_case:english_lowercase",
                       help="organism constraint for the contrastive sets (ignored with --source/--target)")
        p.add_argument("--source", help="file of source prompts, one a line")
        p.add_argument("--target", help="file of target prompts, one a line")
        p.add_argument("--n", type=int, default=32)
        p.add_argument("--n-eval", dest="n_eval", type=int, default=8)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--estimator", default="linear_act")
        p.add_argument("--strength", type=float, default=1.0)
        p.add_argument("--hook", default="mlp.hook_out")
        p.add_argument("--hook-points", dest="hook_points", nargs="+", default=["resid_post", "mlp_out"])
        p.add_argument("--scopes", nargs="+", default=["both"])
        p.add_argument("--lambdas", type=float, nargs="+", default=[1.0])
        p.set_defaults(func=fn)
