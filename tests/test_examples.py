"""Every example script runs in its tiny-model smoke mode."""

import importlib.util
import json
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
    from analyses.studies.experiment import METHODS

    assert (tmp_path / "result.json").exists() and set(res["summary"]) == set(METHODS)


def test_refusal_ablation_smoke(tmp_path):
    res = _main("refusal_ablation")(["--quick", "--out", str(tmp_path)])
    js = json.loads((tmp_path / "refusal.json").read_text())
    assert set(js["best"]) == {"layer", "role", "scope"} and js["best"] == res.to_json()["best"]
    n = res.config["n_test"]  # a rate over the test prompts: a whole number of them
    for key in ("baseline_rate", "steered_rate"):
        assert round(js[key] * n) == pytest.approx(js[key] * n), (key, js[key], n)
    assert (tmp_path / "refusal_sweep.png").exists() and (tmp_path / "refusal.md").read_text().strip()


def test_ilrr_sentiment_smoke(tmp_path):
    res = _main("ilrr_sentiment")(["--quick", "--out", str(tmp_path)])
    js = json.loads((tmp_path / "ilrr.json").read_text())
    assert js["ilrr_rate"] == res.to_json()["ilrr_rate"] and js["baseline_rate"] == res.row("none")["rate"]
    assert (tmp_path / "ilrr.png").exists() and (tmp_path / "ilrr.md").read_text().strip()


def test_compose_maps_smoke():
    rows = _main("compose_maps")(["--smoke"])
    assert {r["plan"] for r in rows} == {"none", "A", "B", "A+B"}
