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
    assert res.baseline is not None and len(res.records) == 2 * 2 * 3
    assert (tmp_path / "refusal_sweep.png").exists()


def test_ilrr_sentiment_smoke():
    rows = _main("ilrr_sentiment")(["--smoke"])
    assert [r["strength"] for r in rows] == [0.0, 0.5] and all(0 <= r["positive_rate"] <= 1 for r in rows)


def test_compose_maps_smoke():
    rows = _main("compose_maps")(["--smoke"])
    assert {r["plan"] for r in rows} == {"none", "A", "B", "A+B"}
