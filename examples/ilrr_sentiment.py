"""ILRR: steer generations toward a reference text's sentiment by aligning activations during denoising.

    python examples/ilrr_sentiment.py --model GSAI-ML/LLaDA-8B-Instruct \
        --reference "What a wonderful, joyful day full of friends and sunshine." --out runs/ilrr
    python examples/ilrr_sentiment.py --smoke

Scored offline with VADER (nltk-vader-sentiment) by default, or `--classifier <hub id>` for a
transformers sentiment model. One extra forward row per step: 8B bf16 ≈ 16 GB + activations for batch+1
rows; a strength sweep of 5 values × 32 prompts × 256 steps is minutes to an hour on one GPU (estimate).
"""
from __future__ import annotations

import argparse

from analyses.sentiment import classifier_positive_rate, vader_positive_rate
from interventions import Plan, ReferenceAlignment


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-if")
    ap.add_argument("--reference", default="The garden is lovely, happy and full of life.")
    ap.add_argument("--classifier", default=None)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    from mdm_lens import HookedMDM
    model = HookedMDM.from_pretrained(args.model)
    metric = classifier_positive_rate(args.classifier) if args.classifier else vader_positive_rate
    prompts = ["Write about the storm.", "Describe the night.", "Tell me about the desert."]
    sampler = dict(gen_length=16, steps=8, block_length=16) if args.smoke else {}
    ref = model.tokenizer(args.reference, add_special_tokens=False)["input_ids"]
    sites = [f"blocks.{l}.hook_resid_post" for l in range(model.n_layers)]
    rows = []
    for s in (args.strengths[:2] if args.smoke else args.strengths):
        plan = Plan.of(ReferenceAlignment(ref, sites, s=s, pooling="mean", profile="linear"))
        texts = model.generate(prompts, plan=plan, seed=0, **sampler).texts
        rows.append({"strength": s, "positive_rate": metric(texts), "example": texts[0]})
        print(rows[-1])
    return rows


if __name__ == "__main__":
    main()
