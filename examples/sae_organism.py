"""SAE workflow on the embedded organism: train (or load) a Top-K SAE, evaluate it by mask ratio and by step, find
the feature behind refusal, and steer with it (texts, refusal rate and damage).

    python examples/sae_organism.py --out runs/sae                  # trains ~10 min on one busy CPU thread
    python examples/sae_organism.py --sae runs/sae/train/sae --out runs/sae
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def _pairs(n: int, seed: int):
    from analyses.studies.organism.behaviours import training_corpus

    return [(e.prompt, e.response) for e in training_corpus(n, seed=seed)]


def train(model, site: str, out: Path, steps: int):
    from analyses.sae import ActivationStore, TrainConfig, train_sae

    st = ActivationStore(
        model, site, pairs=_pairs(4000, seed=1), variant="mask", batch_size=256, buffer_size=8192, gen_batch=8
    )
    sae, _ = train_sae(
        st, TrainConfig(d_sae=2048, k=32, steps=steps, lr=1e-3, log_every=50, checkpoint_every=100), out=out / "train"
    )
    return sae


def steer_rows(model, sae, site, prompts, plans: dict, n_nll: int) -> list[dict]:
    from analyses.damage import damage
    from analyses.refusal import refusal_rate

    rows = []
    for name, plan in plans.items():
        with model.steer(plan) if plan is not None else _null():
            texts = model.generate(prompts, seed=0).texts
        dmg = damage(model, prompts[:n_nll], texts[:n_nll], mc_num=8, batch_size=8)
        nll = [d["nll"] for d in dmg if d["nll"] is not None]
        rows.append(
            {
                "plan": name,
                "refusal_rate": refusal_rate(texts),
                "n": len(texts),
                "mean_nll": sum(nll) / max(len(nll), 1),
                "degenerate": sum(d["degenerate"] for d in dmg) / len(dmg),
                "examples": [{"prompt": p, "text": t} for p, t in list(zip(prompts, texts))[:3]],
            }
        )
    return rows


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return None


def main(argv=None) -> dict:
    from analyses.records import write_json
    from analyses.sae.evaluate import evaluate_by_mask_ratio, evaluate_by_step
    from analyses.sae.features import contrast_features, feature_trace
    from analyses.studies.organism.behaviours import refusal_prompts
    from interventions import SAE, Plan
    from mdm_lens import HookedMDM

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sae", default=None, help="an SAE folder (SAELens layout); default: train one")
    ap.add_argument("--out", default="runs/sae")
    ap.add_argument("--site", default="blocks.2.hook_resid_post")
    ap.add_argument("--train-steps", type=int, default=400)
    ap.add_argument("--n-eval", type=int, default=48)
    ap.add_argument("--n-steer", type=int, default=24)
    ap.add_argument(
        "--coeffs",
        type=float,
        nargs="+",
        default=[50.0, 100.0, 200.0],
        help="steering sizes along the unit decoder row (the site's residual norm is ~600 on tiny-mdm)",
    )
    ap.add_argument("--skip-eval", action="store_true", help="features and steering only")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = HookedMDM.from_pretrained("tiny-mdm")
    sae = SAE.load(args.sae) if args.sae else train(model, args.site, out, args.train_steps)
    harmful, harmless = refusal_prompts(True, split="test"), refusal_prompts(False, split="test")
    result: dict = {"site": args.site, "sae": repr(sae)}
    if not args.skip_eval:
        by_ratio = evaluate_by_mask_ratio(model, sae, args.site, _pairs(args.n_eval, seed=7))
        by_ratio.plot(str(out / "sae_by_mask_ratio.png"))
        by_step = evaluate_by_step(model, sae, args.site, harmful[:8] + harmless[:8])
        by_step.plot(str(out / "sae_by_step.png"))
        result.update(by_mask_ratio=by_ratio.to_json(), by_step=by_step.to_json())
        (out / "sae_organism.md").write_text(by_ratio.table_markdown() + "\n\n" + by_step.table_markdown() + "\n")
        print(by_ratio.table_markdown())
    contrast = contrast_features(
        model, sae, args.site, refusal_prompts(True, split="val"), refusal_prompts(False, split="val"), top=5
    )
    feat = contrast[0]["feature"]
    trace = feature_trace(model, sae, args.site, harmful[:4] + harmless[:4], [feat])
    plans = {"none": None}
    for c in args.coeffs:
        plans[f"add feature {feat} x{c:g}"] = Plan({args.site: sae.steer(feat, c)})
    rows_harmless = steer_rows(model, sae, args.site, harmless[: args.n_steer], plans, n_nll=8)
    ablate = {
        "none": None,
        f"ablate feature {feat}": Plan({args.site: sae.ablate([feat])}),
        "ablate top-3 refusal features": Plan({args.site: sae.ablate([r["feature"] for r in contrast[:3]])}),
    }
    rows_harmful = steer_rows(model, sae, args.site, harmful[: args.n_steer], ablate, n_nll=8)
    result.update(
        refusal_features=contrast,
        feature=feat,
        first_fire=[trace.first_fire(feat, r) for r in range(8)],
        by_step_mean_activation=trace.by_step(feat).tolist(),
        steer_harmless=rows_harmless,
        ablate_harmful=rows_harmful,
    )
    write_json(out / "sae_organism.json", result)
    print(
        json.dumps(
            {"refusal_features": contrast, "steer_harmless": rows_harmless, "ablate_harmful": rows_harmful}, indent=1
        )
    )
    return result


if __name__ == "__main__":
    main()
