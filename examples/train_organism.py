"""Retrain the embedded tiny-if organism (seeded; ~25 minutes on 2 CPU cores).

    python examples/train_organism.py --out mdm_lens/organisms/tiny-if
"""
import argparse

from mdm_lens.organism.train import train

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="mdm_lens/organisms/tiny-if")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(train(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed))
