"""Sentiment scoring for reference-alignment experiments: offline VADER by default, or any classifier."""
from __future__ import annotations

from typing import Callable, Sequence


def vader_positive_rate(texts: Sequence[str]) -> float:
    """Share of texts with VADER compound score > 0.05 (the usual positive threshold)."""
    from vader import polarity_scores
    if not texts:
        raise ValueError("no texts to score")
    return sum(polarity_scores(t)["compound"] > 0.05 for t in texts) / len(texts)


def classifier_positive_rate(model_id: str) -> Callable[[Sequence[str]], float]:
    """A transformers text-classification pipeline (e.g. a hub sentiment model) as a metric."""
    from transformers import pipeline
    clf = pipeline("text-classification", model=model_id)

    def rate(texts: Sequence[str]) -> float:
        labels = [r["label"].lower() for r in clf(list(texts))]
        return sum(lab.startswith("pos") or lab in ("label_1", "5 stars", "4 stars") for lab in labels) / len(labels)
    return rate
