"""`mdm-lens` console script. The CLI is the top of the house: it may import analyses and interventions."""
from __future__ import annotations

import argparse
import json
import sys

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _load(args):
    import torch

    from .hooked import HookedMDM
    dtype = getattr(torch, args.dtype) if getattr(args, "dtype", None) else None
    return HookedMDM.from_pretrained(args.model, dtype=dtype, device=getattr(args, "device", None))


def cmd_sites(args) -> int:
    model = _load(args)
    for name in model.hook_names:
        s = model.site(name)
        print(f"{name}\t{s.width}\t{s.module_path}:{s.kind}")
    return 0


def _sampler_overrides(args) -> dict:
    out = {}
    for key in ("gen_length", "steps", "block_length", "temperature", "remasking", "max_new_tokens", "alg"):
        val = getattr(args, key, None)
        if val is not None:
            out[key] = val
    return out


def cmd_generate(args) -> int:
    model = _load(args)
    out = model.generate(args.prompt, seed=args.seed, chat=not args.no_chat, progress=True,
                         **_sampler_overrides(args))
    for prompt, text in zip(args.prompt, out.texts):
        print(json.dumps({"prompt": prompt, "response": text}))
    return 0


def _add_model_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--model", required=default is None, default=default,
                   help="hub id, local folder in hub layout, or a packaged organism name (e.g. tiny-if)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None)
    p.add_argument("--device", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdm-lens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sites", help="list the canonical hook sites of a model")
    _add_model_args(p)
    p.set_defaults(func=cmd_sites)

    p = sub.add_parser("generate", help="generate with the family's reference sampler")
    _add_model_args(p)
    p.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-chat", action="store_true", help="do not apply the chat template")
    for key, typ in (("gen_length", int), ("steps", int), ("block_length", int), ("temperature", float),
                     ("remasking", str), ("max_new_tokens", int), ("alg", str)):
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=typ, default=None)
    p.set_defaults(func=cmd_generate)

    from .bench import add_parser as add_bench
    add_bench(sub)
    import importlib
    import importlib.util
    for modname in ("analyses.cli", "analyses.demo_cli"):
        if importlib.util.find_spec(modname) is not None:
            importlib.import_module(modname).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        print(f"mdm-lens {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
