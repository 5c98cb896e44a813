"""The terminal table of `mdm-lens demo` gives, section by section, the same verdicts as summary.md's ### Verdict
blocks (issue 25, point 1): same methods, same words, same differences and intervals, in the same order, within a
100-column terminal; a `--quick` run says it is a smoke run in the terminal as in the report. Built from synthetic
records through the real report writer and a summary.json read back from disk."""

import json
import os
import re

from analyses.studies.demo import SMOKE_LINE, table, write_report
from analyses.studies.experiment_plots import method_label
from analyses.studies.ilrr_study import ILRRStudyResult
from analyses.studies.kernel import rate_row
from analyses.records import Section
from analyses.studies.refusal_study import RefusalStudyResult
from analyses.studies.verdicts import verdict_lines
from analyses.studies.verdicts_terminal import WIDTH

# summary.md: | label | **word** | rates | +d [lo, hi] | ...   terminal: "  label   word   +d [ lo,  hi]"
MD_ROW = re.compile(r"^\| (.+?) \| \*\*(.+?)\*\* \| [^|]+ \| ([+-]\d+\.\d) \[([+-]\d+\.\d), ([+-]\d+\.\d)\] \|")
TERM_ROW = re.compile(
    r"^  (.+?) {2,}(helped|hurt|no detectable effect \(n=\d+\)) +([+-]\d+\.\d) \[ *([+-]\d+\.\d), *([+-]\d+\.\d)\]$"
)


def _recs(k: int, n: int, flag: str, nll: float = 2.0, degenerate: int = 0) -> list[dict]:
    return [{flag: i < k, "nll": nll, "degenerate": i < degenerate} for i in range(n)]


def _ifeval() -> dict:
    def acc(k, n, nll=2.0, deg=0):
        r = rate_row(_recs(k, n, "ok", nll, deg), "ok")
        return {"accuracy": r["rate"], "n": n, **{f: r[f] for f in ("ci_low", "ci_high", "nll", "degenerate")}}

    # one of each word: helped, hurt, no detectable effect
    return {
        "none": acc(10, 40),
        "linear_act": acc(30, 40, 2.3, 2),
        "mean_act": acc(1, 40, 3.0, 20),
        "actadd": acc(12, 40),
    }


def _refusal() -> RefusalStudyResult:
    test = []
    for method, k in (("none", 27), ("directional_ablation", 3)):
        harmful = rate_row(_recs(k, 30, "refused"), "refused", method=method, prompts="harmful")
        test.append({**harmful, "answered": 1 - harmful["rate"]})
        test.append(
            {**rate_row(_recs(2, 30, "refused"), "refused", method=method, prompts="harmless"), "answered": 0.9}
        )
    best = {"layer": 1, "role": "resid_post", "scope": "all", "score": 0.1, "cap": 0.5}
    cfg = dict(scopes=["all"], roles=["resid_post"], layers=[0, 1, 2], n_val=4, n_layers=3, n_calib=6)
    sweep = [dict(layer=l, role="resid_post", scope="all", score=0.5, degenerate=0.0) for l in (0, 1, 2)]
    return RefusalStudyResult("m", cfg, {"rate": 0.9}, sweep, best, test)


def _ilrr() -> ILRRStudyResult:
    rows = [
        rate_row(_recs(k, 40, "positive"), "positive", method=m)
        for m, k in (("none", 10), ("ilrr", 34), ("sample_random", 12), ("sample_best_ref", 30))
    ]
    cfg = dict(reference="r", pooling="mean", profile="flat", n_val=4, strengths=[1.0], k=4, temperature=1.0, n_test=40)
    return ILRRStudyResult("m", {**cfg, "compute": {}}, [], {"s": 1.0}, rows)


def _report(tmp_path, quick: bool) -> tuple[str, str]:
    """(summary.md, terminal table) of one synthetic demo summary, through the demo's own writer."""
    methods, ref, ilrr = _ifeval(), _refusal(), _ilrr()
    sections = [
        Section("ifeval", ["## IFEval steering", ""] + verdict_lines(methods, method_label), {"methods": methods}),
        Section("refusal", ["## Refusal", "", ref.table_markdown()], ref.to_json()),
        Section("ilrr", ["## ILRR", "", ilrr.table_markdown()], ilrr.to_json()),
    ]
    write_report(str(tmp_path), "demo", {"model": "m", "quick": quick}, sections)
    summary = json.load(open(os.path.join(tmp_path, "summary.json")))  # what `mdm-lens demo` prints from
    return open(os.path.join(tmp_path, "summary.md")).read(), table(summary)


def _rows(text: str, pattern: re.Pattern) -> list[tuple[str, ...]]:
    return [m.groups() for line in text.splitlines() if (m := pattern.match(line))]


def test_terminal_verdicts_equal_summary_md(tmp_path):
    md, term = _report(tmp_path, quick=False)
    md_rows, term_rows = _rows(md, MD_ROW), _rows(term, TERM_ROW)
    # IFEval 3 methods, refusal 1, ILRR 3 vs greedy + 2 vs sampling
    assert len(md_rows) == 9 and term_rows == md_rows
    words = [r[1] for r in term_rows]
    assert {"helped", "hurt", "no detectable effect (n=40)"} <= set(words)
    headings = [line for line in term.splitlines() if " verdict vs " in line]
    assert [h.split(" verdict")[0] for h in headings] == ["IFEval", "Refusal", "ILRR", "ILRR"]
    assert "lower is the aim" in headings[1] and "higher is the aim" in headings[0]
    assert "vs sampling" in headings[3]
    assert SMOKE_LINE not in term


def test_terminal_lines_fit_100_columns_and_quick_says_smoke(tmp_path):
    md, term = _report(tmp_path, quick=True)
    assert max(len(line) for line in term.splitlines()) <= WIDTH, max(term.splitlines(), key=len)
    lines = term.splitlines()
    assert lines[0] == SMOKE_LINE and lines[-1] == SMOKE_LINE  # seen whether one reads the top or the tail
    assert "Smoke run (`--quick`)" in md
