"""Every example script runs in its tiny-model smoke mode."""
import importlib.util
from pathlib import Path

import pytest

from mdm_lens.organisms import available

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")


def _main(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_ot_ifeval_smoke(tmp_path):
    res = _main("ot_ifeval")(["--smoke", "--out", str(tmp_path)])
    assert (tmp_path / "result.json").exists() and len(res["summary"]) == 7


def test_refusal_ablation_smoke(tmp_path):
    res = _main("refusal_ablation")(["--smoke", "--out", str(tmp_path)])
    assert len(res.records) == 2 * 2 * 3
    n = 6                                          # harmful prompts scored per cell in smoke mode
    for r in res.records:                          # every cell ran and scored (no error recorded instead)
        assert "error" not in r and round(r["score"] * n) == pytest.approx(r["score"] * n), r
    assert round(res.baseline * n) == pytest.approx(res.baseline * n)
    assert (tmp_path / "refusal_sweep.png").exists()


def test_ilrr_sentiment_smoke():
    rows = _main("ilrr_sentiment")(["--smoke"])
    assert [r["strength"] for r in rows] == [0.0, 0.5]
    for r in rows:                                 # a rate over the 3 prompts: a whole number of them
        assert r["positive_rate"] in (0.0, 1 / 3, 2 / 3, 1.0), r


def test_compose_maps_smoke():
    rows = _main("compose_maps")(["--smoke"])
    assert {r["plan"] for r in rows} == {"none", "A", "B", "A+B"}
