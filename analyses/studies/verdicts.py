"""Verdicts in words for a protocol report: did each method help, hurt or do nothing, by how much (with a 95%
interval on the difference from the unsteered baseline), and at what damage. The interval is Newcombe's hybrid
score interval for a difference of two proportions (method 10 of Newcombe 1998), built from the two Wilson
intervals the report already shows, so a verdict never contradicts its table: "helped" only when the whole
interval lies above zero, "hurt" only when it lies below, otherwise "no clear change"."""

from __future__ import annotations

import math

from ..stats import wilson_interval


def difference_interval(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float, float]:
    """p1 - p0 and its 95% Newcombe interval."""
    p1, p0 = k1 / n1, k0 / n0
    l1, u1 = wilson_interval(k1, n1)
    l0, u0 = wilson_interval(k0, n0)
    d = p1 - p0
    return d, d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def verdict(diff: tuple[float, float, float]) -> str:
    d, lo, hi = diff
    if lo > 0:
        return "helped"
    if hi < 0:
        return "hurt"
    return "no clear change"


def damage_words(s: dict, base: dict) -> str:
    deg = f"{100 * s['degenerate']:.0f}% degenerate texts (unsteered {100 * base['degenerate']:.0f}%)"
    if s.get("nll") is None or base.get("nll") is None:
        return deg
    return f"NLL {s['nll']:.2f} vs {base['nll']:.2f} nats/token unsteered, {deg}"


def verdict_lines(summary: dict, label=lambda m: m, baseline: str = "none") -> list[str]:
    """One sentence per steered method against `baseline` (pooled accuracy counts `k`/`n` from the summary)."""
    base = summary.get(baseline)
    if base is None:
        return []
    bk = round(base["accuracy"] * base["n"])
    lines = ["### Verdict", ""]
    for m, s in summary.items():
        if m == baseline:
            continue
        k = round(s["accuracy"] * s["n"])
        diff = difference_interval(k, s["n"], bk, base["n"])
        lines.append(
            f"- **{label(m)} {verdict(diff)}**: {100 * s['accuracy']:.1f}% vs {100 * base['accuracy']:.1f}% "
            f"unsteered, a difference of {100 * diff[0]:+.1f} points (95% interval [{100 * diff[1]:+.1f}, "
            f"{100 * diff[2]:+.1f}]); damage: {damage_words(s, base)}."
        )
    return lines + [""]
