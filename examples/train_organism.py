"""Retrain the embedded tiny-mdm organism (seeded, resumable; two stages, about 25 minutes on 2 CPU threads).

The packaged tiny-mdm is two stages (its training.json records both):

    python examples/train_organism.py --out /tmp/stage1 --work /tmp/organism1 --steps 1600 --lr 3e-3 --threads 2
    python examples/train_organism.py --out mdm_lens/organisms/tiny-mdm --work /tmp/organism2 --steps 1200 \\
        --lr 1.5e-3 --init-from /tmp/stage1 --threads 2

Checkpoints go to --work every few minutes (atomically); rerunning the same command resumes from there.
Then measure it:  python examples/evaluate_organism.py --model mdm_lens/organisms/tiny-mdm --split val
"""

import argparse
import json

from analyses.studies.organism.train import train

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="mdm_lens/organisms/tiny-mdm")
    ap.add_argument("--work", required=True, help="checkpoint folder (outside the repo); rerun with it to resume")
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    ap.add_argument("--init-from", help="model folder of an earlier stage to continue from (fresh schedule)")
    ap.add_argument("--ckpt-every", type=float, default=180.0, help="seconds between checkpoints")
    args = ap.parse_args()
    print(
        json.dumps(
            train(
                args.out,
                work=args.work,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.seed,
                threads=args.threads,
                ckpt_every=args.ckpt_every,
                init_from=args.init_from,
            ),
            indent=2,
        )
    )
