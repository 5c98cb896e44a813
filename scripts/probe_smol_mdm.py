"""Refusal-direction probe on smol-mdm (or a checkpoint folder): ablation and addition, few prompts.

python scripts/probe_smol_mdm.py --model /path/to/folder --layers 6 10 > probe.json
"""

import argparse
import json

if __name__ == "__main__":
    import torch

    from analyses.studies.organism.probe import refusal_probe
    from mdm_lens import HookedMDM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smol-mdm")
    ap.add_argument("--layers", type=int, nargs="+", required=True, help="candidate layers (chosen on validation)")
    ap.add_argument("--n-calib", type=int, default=16)
    ap.add_argument("--n-val", type=int, default=6)
    ap.add_argument("--n-test", type=int, default=12)
    ap.add_argument("--add-scale", type=float, default=1.0)
    args = ap.parse_args()
    model = HookedMDM.from_pretrained(args.model, dtype=torch.float32)
    print(
        json.dumps(refusal_probe(model, args.layers, args.n_calib, args.n_val, args.n_test, args.add_scale), indent=1)
    )
