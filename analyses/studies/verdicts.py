"""Verdicts in words for a protocol report: did each method help, hurt or do nothing, by how much (with a 95%
interval on the difference from the unsteered baseline), at what damage, and what the paper found. The interval is
Newcombe's hybrid score interval for a difference of two proportions (method 10 of Newcombe 1998), built from the
two Wilson intervals the report already shows, so a verdict never contradicts its table: "helped" only when the
whole interval lies on the side the method aims for, "hurt" only when it lies on the other, otherwise "no
detectable effect (n=…)" (the n says how small an effect could hide in the interval).

One table shape serves every section of the demo report (IFEval, refusal ablation, ILRR): method, verdict, rate
steered vs unsteered, difference with its interval, damage, and the paper's number for the same comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..stats import wilson_interval

# The OT-steering paper (Lek et al., /work/shared/papers/000, §3 "Average accuracy across steering methods",
# Figure 3) on LLaDA-8B-Instruct, IFEval accuracy vs no steering. The text gives a number for Linear-ACT only;
# the other bars are in Figure 3, so their cells quote what the text says of them.
PAPER_IFEVAL_SOURCE = "Lek et al., LLaDA-8B-Instruct, §3 / Fig. 3"
PAPER_IFEVAL = {
    "linear_act": "helped: +11.9 points (the best method)",
    "gaussian_ot": "helped: second best, below +11.9",
    "mean_act": "helped: below Gaussian OT",
    "directional_ablation": "can underperform no steering",
    "actadd": "Fig. 3 only (no number in the text)",
}
# ILRR (arXiv 2601.21647, summary /work/shared/papers/004): "improves steering accuracy by 10% to 60 percentage
# points compared to sampling-based baselines under the same compute budget" (sentiment and toxicity).
PAPER_ILRR_SOURCE = "arXiv 2601.21647, sentiment/toxicity"
PAPER_ILRR_VS_SAMPLING = "+10 to +60 points over sampling at equal compute"


def difference_interval(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float, float]:
    """p1 - p0 and its 95% Newcombe interval."""
    p1, p0 = k1 / n1, k0 / n0
    l1, u1 = wilson_interval(k1, n1)
    l0, u0 = wilson_interval(k0, n0)
    d = p1 - p0
    return d, d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def verdict(diff: tuple[float, float, float], n: int | None = None, lower_is_better: bool = False) -> str:
    """Helped or hurt when the interval excludes zero on one side, else "no detectable effect (n=…)"."""
    d, lo, hi = diff
    if lo > 0:
        return "hurt" if lower_is_better else "helped"
    if hi < 0:
        return "helped" if lower_is_better else "hurt"
    return "no detectable effect" + (f" (n={n})" if n is not None else "")


def count_of(row: dict) -> int:
    """How many of a study row's `n` texts had the scored flag (`k`; rows without it: from the rate)."""
    return int(row["k"]) if row.get("k") is not None else round(row["rate"] * row["n"])


def damage_words(s: dict, base: dict, base_name: str = "unsteered") -> str:
    """NLL (and its change) and degenerate share of `s` beside those of `base` (named `base_name`)."""
    deg = f"{100 * s['degenerate']:.0f}% degenerate texts ({base_name} {100 * base['degenerate']:.0f}%)"
    if s.get("nll") is None or base.get("nll") is None:
        return deg
    return f"NLL {s['nll']:.2f} vs {base['nll']:.2f} nats/token {base_name} ({s['nll'] - base['nll']:+.2f}), {deg}"


@dataclass
class Verdict:
    """One method against its baseline: counts of the scored outcome, damage in words, the paper's finding."""

    label: str
    k: int
    n: int
    k0: int
    n0: int
    damage: str
    paper: str = "-"
    lower_is_better: bool = False

    @property
    def diff(self) -> tuple[float, float, float]:
        return difference_interval(self.k, self.n, self.k0, self.n0)

    @property
    def word(self) -> str:
        return verdict(self.diff, min(self.n, self.n0), self.lower_is_better)

    def row(self) -> str:
        d, lo, hi = self.diff
        return (
            f"| {self.label} | **{self.word}** | {100 * self.k / self.n:.1f}% vs {100 * self.k0 / self.n0:.1f}% | "
            f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {self.damage} | {self.paper} |"
        )


def verdict_table(
    rows: list[Verdict], what: str, baseline: str, paper_source: str, title: str = "### Verdict"
) -> list[str]:
    """`title`, one sentence naming what helped and what hurt, then the table (`what`: the scored rate)."""
    if not rows:
        return []
    # labels may hold commas ("k samples, random pick"): a slash between them
    by = {w: [r.label for r in rows if r.word.startswith(w)] for w in ("helped", "hurt", "no detectable")}
    said = [f"{w}: {' / '.join(v)}" for w, v in by.items() if v and w != "no detectable"]
    nothing = [r for r in rows if r.word.startswith("no detectable")]
    if nothing:
        said.append(f"no detectable effect (n={min(r.n for r in nothing)}): {' / '.join(by['no detectable'])}")
    aim = "lower" if rows[0].lower_is_better else "higher"
    return [
        title,
        "",
        f"Against {baseline}, {what} ({aim} is the aim), 95% Newcombe interval on the difference: "
        + "; ".join(said)
        + ".",
        "",
        f"| method | verdict | {what}, steered vs {baseline} | difference, points [95% interval] | damage | "
        f"paper ({paper_source}) |",
        "|---|---|---|---|---|---|",
        *[r.row() for r in rows],
        "",
    ]


def verdict_lines(summary: dict, label=lambda m: m, baseline: str = "none") -> list[str]:
    """The IFEval verdict: every steered method against `baseline` (pooled accuracy counts from the summary)."""
    rows = ifeval_verdicts(summary, label, baseline)
    return verdict_table(rows, "strict IFEval accuracy", "no steering", PAPER_IFEVAL_SOURCE)


def ifeval_verdicts(summary: dict, label=lambda m: m, baseline: str = "none") -> list[Verdict]:
    """One `Verdict` per steered method of an IFEval summary (`{method: {accuracy, n, nll, degenerate}}`) against
    `baseline`; summary.md and the terminal both format these rows, so they cannot disagree."""
    base = summary.get(baseline)
    if base is None:
        return []
    bk = round(base["accuracy"] * base["n"])
    return [
        Verdict(
            label(m),
            round(s["accuracy"] * s["n"]),
            s["n"],
            bk,
            base["n"],
            damage_words(s, base),
            PAPER_IFEVAL.get(m, "not in the paper"),
        )
        for m, s in summary.items()
        if m != baseline
    ]
