"""Sentiment scoring for reference-alignment experiments: offline VADER (a `module:function` metric of the
sweep can bring any classifier)."""

from __future__ import annotations

from typing import Sequence


def vader_positive_rate(texts: Sequence[str]) -> float:
    """Share of texts with VADER compound score > 0.05 (the usual positive threshold)."""
    from vader import polarity_scores

    if not texts:
        raise ValueError("no texts to score")
    return sum(polarity_scores(t)["compound"] > 0.05 for t in texts) / len(texts)
