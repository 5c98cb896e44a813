"""A fast smoke run of the demo pipeline on the packaged organism writes every report file."""
import json
import os

import pytest

from mdm_lens.organisms import available


@pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")
def test_quick_demo_writes_the_report(tmp_path):
    from analyses.demo import run_demo
    out = str(tmp_path / "report")
    summary = run_demo(out, quick=True, progress=False)
    for f in ("summary.md", "summary.json", "effects.csv", "effects.png", "composition.csv", "composition.png",
              "experiment/result.json", "experiment/rows.csv", "experiment/radar.png", "experiment/bars.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    data = json.load(open(os.path.join(out, "summary.json")))
    assert set(data["methods"]) == set(summary["methods"]) and "none" in data["methods"]
    from analyses.stats import wilson_interval
    for m in data["methods"].values():
        k = round(m["accuracy"] * m["n"])
        assert abs(m["accuracy"] - k / m["n"]) < 1e-12
        assert (m["ci_low"], m["ci_high"]) == pytest.approx(wilson_interval(k, m["n"]))
