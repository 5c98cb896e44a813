"""`mdm-lens view`: one self-contained HTML trace viewer for one or more prompts (analyses.view). Torch-free at
import time: `add_parser` only builds argparse options; `run` imports the model code."""

from __future__ import annotations

import argparse
import os


def add_parser(sub, model_options, sampler_options, sampler_keys) -> None:
    """`model_options` / `sampler_options`: the shared option builders of analyses.cli.commands (passed in, so that
    this module does not import commands back); `sampler_keys`: the sampler settings those options set."""
    p = sub.add_parser(
        "view",
        help="interactive HTML trace viewer of a generation (token x step grid, lens, attention, steered vs unsteered)",
        description="Generate each prompt once with the decode trace (and once more with --plan "
        "attached, side by side with the differing positions marked and the damage beside them) and "
        "write one self-contained HTML page: no server, no network, opens from file://.",
    )
    model_options(p, default="tiny-mdm", dtype=True)
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat the option for more")
    p.add_argument(
        "--plan",
        default=None,
        help="a plan file (interventions.Plan.save) for a steered run beside the unsteered one (default: "
        "unsteered only)",
    )
    p.add_argument("--out", required=True, help="the HTML file to write (e.g. trace.html)")
    p.add_argument("--title", default=None, help="page title (default: names the model and the runs)")
    p.add_argument("--top-k", dest="top_k", type=int, default=5, help="predictions kept per position and step")
    p.add_argument(
        "--detail-steps",
        dest="detail_steps",
        type=int,
        nargs="*",
        default=None,
        help="steps where the logit lens and attention are read (default: 6 evenly spaced)",
    )
    p.add_argument(
        "--lens-layers",
        dest="lens_layers",
        type=int,
        nargs="*",
        default=None,
        help="layers of the logit lens (default: all; none given: no lens)",
    )
    p.add_argument(
        "--attn-layers",
        dest="attn_layers",
        type=int,
        nargs="*",
        default=None,
        help="layers whose attention is stored (default: all while layers x heads <= 256, else the "
        "last; none given: no attention)",
    )
    p.add_argument(
        "--damage-mc",
        dest="damage_mc",
        type=int,
        default=64,
        help="Monte-Carlo samples of the damage NLL beside a steered run (0: no damage)",
    )
    sampler_options(p)
    p.set_defaults(func=run, sampler_keys=tuple(sampler_keys))


def run(args: argparse.Namespace) -> int:
    import torch

    from mdm_lens import HookedMDM

    from ..view import render

    if not args.out.endswith((".html", ".htm")):
        raise ValueError(f"--out {args.out!r} must end in .html (the viewer is one HTML page)")
    if args.damage_mc < 0:
        raise ValueError(f"--damage-mc {args.damage_mc}: a number of samples >= 0 (0 skips damage)")
    plan = None
    if args.plan is not None:
        if not os.path.isfile(args.plan):
            raise FileNotFoundError(f"--plan {args.plan!r}: no such file; write one with Plan.save(path)")
        from interventions import Plan

        plan = Plan.load(args.plan)
    model = HookedMDM.from_pretrained(
        args.model, dtype=getattr(torch, args.dtype) if args.dtype else None, device=args.device
    )
    overrides = {k: getattr(args, k) for k in args.sampler_keys if getattr(args, k) is not None}
    view = render(
        model,
        args.prompt,
        plan=plan,
        title=args.title,
        top_k=args.top_k,
        seed=args.seed,
        chat=not args.no_chat,
        detail_steps=args.detail_steps,
        lens_layers=args.lens_layers,
        attn_layers=args.attn_layers,
        damage_mc=args.damage_mc or None,
        progress=True,
        **overrides,
    )
    path = view.save(args.out)
    print(
        f"wrote {path} ({view.size_bytes / 1e6:.2f} MB, {len(args.prompt)} prompt(s)"
        f"{', unsteered vs steered' if plan is not None else ''})"
    )
    return 0
