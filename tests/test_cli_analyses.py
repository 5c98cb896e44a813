"""`mdm-lens moments|effects|sweep|experiment` write their CSV/JSON/PNG outputs (organism, tiny sizes)."""
import json
import os

import pytest

from analyses.cli import main
from mdm_lens.organisms import available

pytestmark = pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")


def test_moments_and_effects(tmp_path):
    assert main(["moments", "--out", str(tmp_path / "m"), "--n", "6"]) == 0
    recs = json.load(open(tmp_path / "m" / "moments.json"))
    assert {r["estimator"] for r in recs} >= {"none", "linear_act"} and os.path.getsize(tmp_path / "m" / "moments.png")
    assert main(["effects", "--out", str(tmp_path / "e"), "--n", "6", "--n-eval", "2"]) == 0
    assert os.path.getsize(tmp_path / "e" / "effects.csv") and os.path.getsize(tmp_path / "e" / "effects.png")


def test_sweep_and_experiment(tmp_path):
    assert main(["sweep", "--out", str(tmp_path / "s"), "--n", "6", "--n-eval", "2", "--hook-points", "mlp_out"]) == 0
    assert os.path.getsize(tmp_path / "s" / "sweep.png")
    assert main(["experiment", "--model", "tiny-if", "--out", str(tmp_path / "x"), "--n-calib", "4", "--n-val", "1",
                 "--n-test", "2", "--lambdas", "1.0", "--methods", "none", "linear_act", "--gen-length", "16",
                 "--steps", "8", "--block-length", "16"]) == 0
    res = json.load(open(tmp_path / "x" / "result.json"))
    assert set(res["summary"]) == {"none", "linear_act"} and res["config"]["lambdas"] == [1.0]
