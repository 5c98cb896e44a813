"""Prove the big-model load path on CPU: write a random-weight checkpoint of a real model's shape in hub layout
(sharded bf16 safetensors + index, streamed so the model is never in RAM), load it with
`HookedMDM.from_pretrained(folder, dtype=torch.bfloat16)` in a fresh process, run one forward on a few tokens and
print the memory / time figures as JSON (see analyses/bench/load.py for what each figure means).

    python scripts/check_big_load.py --family llada --shape 8b          # LLaDA-8B-Instruct: 16 GB of disk
    python scripts/check_big_load.py --family llada2 --shape mini       # LLaDA2.0-mini (16B MoE): 32 GB of disk

The checkpoint goes to --folder (default: a temporary folder next to --scratch) and is deleted afterwards unless
--keep. Free disk space is checked before the first byte is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyses.bench.bigckpt import SHAPES  # noqa: E402
from analyses.bench.load import measure_load, run_load_bench  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="llada", choices=sorted({f for f, _ in SHAPES}))
    p.add_argument("--shape", default="8b", choices=sorted({s for _, s in SHAPES}))
    p.add_argument("--folder", default=None, help="where to write the checkpoint (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    p.add_argument("--reuse", action="store_true", help="measure the checkpoint already in --folder")
    p.add_argument("--tokens", type=int, default=8, help="tokens in the one forward (default 8)")
    p.add_argument("--json", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if (args.family, args.shape) not in SHAPES:
        p.error(f"unknown shape {args.family}/{args.shape}; known: {sorted(f'{f}/{s}' for f, s in SHAPES)}")
    if args.tokens < 1:
        p.error(f"--tokens={args.tokens} must be >= 1")
    if args.reuse:
        if args.folder is None:
            p.error("--reuse needs --folder")
        result = {"family": args.family, "shape": args.shape, **measure_load(args.folder, tokens=args.tokens)}
    else:
        result = run_load_bench(args.family, args.shape, folder=args.folder, tokens=args.tokens, keep=args.keep)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        from mdm_lens.safefile import write_text_atomic

        write_text_atomic(text + "\n", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
