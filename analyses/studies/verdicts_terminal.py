"""The verdicts of a demo or experiment run as the terminal prints them: the same `Verdict` rows summary.md
formats (`verdicts.ifeval_verdicts`, `refusal_study.refusal_verdicts`, `ilrr_study.ilrr_verdicts`, all built from
the summary's own numbers), cut to method, verdict word and the difference with its 95% interval, so that one
line fits a 100-column terminal. Damage and the paper's numbers stay in summary.md, which the footer names."""

from __future__ import annotations

from .verdicts import Verdict

LABEL_WIDTH = 41  # the longest label the demo prints, "ILRR vs k samples, closest to reference" (39), + 2
WORD_WIDTH = 30  # "no detectable effect (n=9999)" (29) + 1
WIDTH = 100  # the terminal the lines must fit


def verdict_line(v: Verdict) -> str:
    """`  label  verdict  difference [95% interval]` in points, at most WIDTH characters (long labels are cut)."""
    d, lo, hi = v.diff
    label = v.label if len(v.label) <= LABEL_WIDTH - 2 else v.label[: LABEL_WIDTH - 3] + "…"
    return f"  {label:<{LABEL_WIDTH}}{v.word:<{WORD_WIDTH}}{100 * d:+6.1f} [{100 * lo:+6.1f}, {100 * hi:+6.1f}]"


def verdict_block(rows: list[Verdict], title: str, what: str, baseline: str) -> list[str]:
    """A heading naming the section, the baseline, the scored rate and the aim, then one `verdict_line` per row."""
    if not rows:
        return []
    aim = "lower" if rows[0].lower_is_better else "higher"
    return [f"{title} verdict vs {baseline} ({what}, {aim} is the aim), difference in points [95% CI]:"] + [
        verdict_line(v) for v in rows
    ]


def summary_verdicts(summary: dict) -> list[tuple[str, str, str, list[Verdict]]]:
    """(section title, scored rate, baseline, rows) for every section the demo summary holds, in summary.md's
    order."""
    from .experiment_plots import method_label
    from .ilrr_study import ilrr_verdicts
    from .refusal_study import refusal_verdicts
    from .verdicts import ifeval_verdicts

    out = []
    if "ifeval" in summary:
        out.append(
            ("IFEval", "strict accuracy", "no steering", ifeval_verdicts(summary["ifeval"]["methods"], method_label))
        )
    if "refusal" in summary:
        out.append(("Refusal", "refusal rate", "no steering", refusal_verdicts(summary["refusal"]["test"])))
    if "ilrr" in summary:
        greedy, sampling = ilrr_verdicts(summary["ilrr"]["test"])
        out.append(("ILRR", "positive rate", "no steering", greedy))
        out.append(("ILRR", "positive rate", "sampling", sampling))
    return out


def terminal_verdicts(summary: dict) -> list[str]:
    """Every section's verdict block, then where the damage and the paper's numbers are."""
    lines: list[str] = []
    for title, what, baseline, rows in summary_verdicts(summary):
        lines += [""] + verdict_block(rows, title, what, baseline)
    if lines:
        lines.append("(damage beside each verdict, and the paper's number: the ### Verdict blocks of summary.md)")
    return lines
