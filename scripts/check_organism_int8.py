"""What int8 export costs: the masked-diffusion loss of a float32 training checkpoint and of its int8 export.

    python scripts/check_organism_int8.py --work /work/scratch-organism/run3 --export /work/scratch-organism/smol-r3

Both models see the same 96 corpus-v3 examples (seed 7, not the training draw) with the same masks; prints JSON
(run 3, 2026-12-08: float32 0.4390, int8 0.4391 nats, `docs/organism/run3-int8-check.json`).
"""

import argparse
import json
from pathlib import Path

import torch

from analyses.studies.organism import corpus_v3
from analyses.studies.organism.train import _load_checkpoint, batch
from analyses.studies.organism.train_v3 import _load_base, encode, sft_loss
from mdm_lens.loading import load_model


def mean_loss(model, rows, tok, batch_size: int = 16) -> float:
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            ids, plen = batch(rows[i : i + batch_size], tok.eos_token_id)
            gen = torch.Generator().manual_seed(i)  # the same masks for every model
            total += float(sft_loss(model, ids, plen, tok.mask_token_id, gen)) * len(ids)
    return total / len(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="the train_v3 work folder (float32 checkpoint)")
    ap.add_argument("--export", required=True, help="its int8 export (train_smol_mdm.py --export OUT --int8)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fm, tok, _ = _load_base(args.work)
    _load_checkpoint(Path(args.work), fm, torch.optim.AdamW(fm.parameters()))
    qm, *_ = load_model(args.export)
    examples = corpus_v3.training_corpus(4000, seed=7, mix=(0.45, 0.3, 0.25), revision=2)[:96]
    rows = encode(tok, examples)
    out = {name: round(mean_loss(m.eval(), rows, tok), 4) for name, m in (("float32", fm), ("int8", qm))}
    print(json.dumps(out | {"n_examples": len(rows), "note": "corpus v3 examples (seed 7), same masks for both"}))
