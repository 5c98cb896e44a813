"""README figures agree with their sources (issue 25, points 7 and 8). The demo's rates change with the organism
and the seed, so the README quotes none of them (the report states them with intervals): the only percentages in
its demo paragraph and steered-text table are the refusal paper's, as the report cites them. The thread figures are
quoted from the committed `mdm-lens bench threads` JSON and must equal it."""

import json
import re
from pathlib import Path

from analyses.studies.refusal_study import PAPER

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _between(start: str, end: str) -> str:
    i = README.index(start)
    return README[i : README.index(end, i)]


def test_demo_text_quotes_no_rate_but_the_papers():
    demo = _between("The demo takes", "## Tour") + _between("Unsteered and steered text side by side", "From the shell")
    quoted = set(re.findall(r"\d+(?:\.\d+)?%", demo.replace("95% interval", "")))  # a confidence level, not a rate
    paper = {f"{100 * PAPER['baseline_rate']:.2f}%", f"{100 * PAPER['steered_rate']:.2f}%"}
    assert quoted == paper == {"87.56%", "0.00%"}
    assert not re.search(r"\d,\d{3} generations", demo)  # a count that changes with the sizes


def test_thread_figures_are_the_benchs():
    bench = json.loads((ROOT / "docs/bench/threads.json").read_text())["variants"]
    text = " ".join(_between("The demo takes", "What it prints").split())
    m = re.search(
        r"took ([\d.]+) s with OpenMP's default wait policy, ([\d.]+) s with `OMP_WAIT_POLICY=PASSIVE` and ([\d.]+) s "
        r"with one thread; beside two more busy processes ([\d.]+) s, ([\d.]+) s and ([\d.]+) s",
        text,
    )
    assert m, "the README's thread sentence changed: keep its figures tied to docs/bench/threads.json"
    order = ("default", "passive", "one_thread")
    want = [bench[v]["ambient_s"] for v in order] + [bench[v]["with_competitors_s"] for v in order]
    assert [float(x) for x in m.groups()] == [round(w, 1) for w in want]
    assert json.loads((ROOT / "docs/bench/threads.json").read_text())["competitors"] == 2  # "two more"
