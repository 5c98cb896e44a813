"""`mdm-lens sae train|eval`: train an SAE on denoising activations, evaluate one by mask ratio.

Stdlib-only at import time (`mdm-lens --help` imports neither torch nor transformers); torch is imported in `run`.
Pairs come from a JSONL file of {"prompt": ..., "response": ...} lines, or `organism` (the embedded organism's
training corpus; held-out seed for evaluation).
"""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sae",
        help="sparse autoencoders on denoising activations: train, eval",
        description="train: a Top-K / BatchTopK / ReLU SAE on one site's activations at masked "
        "('mask') or decoded ('unmask') response positions of canvases masked at 0.1..0.9, with "
        "checkpoints and resume in --out (SAE in --out/sae, SAELens layout). eval: MSE, explained "
        "variance, L0, dead/dense latents and masked-token CE with the SAE spliced vs clean vs the "
        "site zeroed, by mask ratio (sae_eval.json/csv, sae_eval.png). docs/sae.md.",
    )
    p.add_argument("action", choices=("train", "eval"), help="train an SAE into --out, or evaluate one")
    p.add_argument("--model", default="tiny-mdm", help="hub id, local folder or packaged organism")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--site", default=None, help="hook site (train: required; eval: default the SAE's hook_name)")
    p.add_argument("--pairs", default="organism", help="JSONL of {prompt, response} lines, or 'organism'")
    p.add_argument(
        "--n-pairs",
        dest="n_pairs",
        type=int,
        default=None,
        help="pairs used (organism default: 4000 to train, 48 to evaluate)",
    )
    p.add_argument("--out", required=True, help="output folder (train: checkpoint + sae/; eval: records + figure)")
    p.add_argument("--sae", default=None, help="eval: the SAE folder (default: --out/sae)")
    p.add_argument(
        "--variant",
        choices=("mask", "unmask", "response"),
        default="mask",
        help="positions read: still-masked response positions, decoded ones, or both",
    )
    p.add_argument(
        "--architecture",
        choices=("topk", "batchtopk", "standard"),
        default="topk",
        help="SAE architecture to train (standard: ReLU with decoder-norm-weighted L1)",
    )
    p.add_argument("--d-sae", dest="d_sae", type=int, default=None, help="latents (default: 8 x the site width)")
    p.add_argument("--k", type=float, default=32, help="active latents per token (topk, batchtopk)")
    p.add_argument("--steps", type=int, default=400, help="training batches")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="activations per training batch")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the store, the initialisation and the masks")
    p.set_defaults(func=run)


def _pairs(args, train: bool) -> list:
    if args.pairs == "organism":
        from analyses.studies.organism.behaviours import training_corpus

        n = args.n_pairs or (4000 if train else 48)
        return [(e.prompt, e.response) for e in training_corpus(n, seed=1 if train else 7)]
    path = Path(args.pairs)
    if not path.is_file():
        raise FileNotFoundError(f"--pairs {path}: no such file; give a JSONL of {{prompt, response}} or 'organism'")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            r = json.loads(line)
            if not isinstance(r, dict) or not {"prompt", "response"} <= set(r):
                raise ValueError(f"{path}:{i + 1}: each line must be a JSON object with 'prompt' and 'response'")
            rows.append((r["prompt"], r["response"]))
    return rows[: args.n_pairs] if args.n_pairs else rows


def run(args) -> int:
    import torch

    from analyses.records import write_json, write_records
    from analyses.sae import ActivationStore, TrainConfig, train_sae
    from analyses.sae.evaluate import evaluate_by_mask_ratio
    from interventions import SAE
    from mdm_lens import HookedMDM

    out = Path(args.out)
    if args.action == "train" and not args.site:
        raise ValueError("sae train needs --site (e.g. blocks.2.hook_resid_post; `mdm-lens sites` lists them)")
    if args.steps <= 0 or args.batch_size <= 0 or not args.lr > 0:
        raise ValueError(
            f"--steps, --batch-size and --lr must be positive, got {args.steps}, {args.batch_size}, {args.lr}"
        )
    torch.manual_seed(args.seed)
    model = HookedMDM.from_pretrained(args.model, device=args.device)
    if args.action == "train":
        width = model.site(args.site).width
        store = ActivationStore(
            model,
            args.site,
            pairs=_pairs(args, True),
            variant=args.variant,
            batch_size=args.batch_size,
            buffer_size=32 * args.batch_size,
            gen_batch=8,
            seed=args.seed,
        )
        cfg = TrainConfig(
            architecture=args.architecture,
            d_sae=args.d_sae or 8 * width,
            k=None if args.architecture == "standard" else args.k,
            steps=args.steps,
            lr=args.lr,
            seed=args.seed,
        )
        sae, log = train_sae(store, cfg, out=out)
        write_records(out, "train_log", log)
        print(json.dumps(log[-1]))
        return 0
    sae = SAE.load(args.sae or out / "sae")
    site = args.site or sae.metadata.get("hook_name")
    ev = evaluate_by_mask_ratio(model, sae, site, _pairs(args, False), variant=args.variant, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out, "sae_eval", ev.records)
    write_json(out / "sae_eval_summary.json", ev.to_json())
    ev.plot(str(out / "sae_eval.png"))
    print(ev.table_markdown())
    return 0
