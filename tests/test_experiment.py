"""The paper-protocol runner end to end on a tiny model with small sizes."""
import json
import os

import pytest

from analyses.experiment import METHODS, EvalRecord, ExperimentConfig, Task, run_experiment, write_result
from analyses.records import write_csv
from analyses.stats import wilson_interval

PLAIN = ["hello world", "the cat is good", "write a story", "a dog and a cat", "the sun and the moon"]


def _task(name, iid, kwargs):
    recs = [EvalRecord(p + " no comma please", [iid], [kwargs], i) for i, p in enumerate(PLAIN)]
    return Task(name, PLAIN[:4], [p + " please" for p in PLAIN[:4]], recs[:2], recs[2:])


def test_runner_end_to_end(tiny_llada, tmp_path):
    tasks = [_task("no_comma", "punctuation:no_comma", {}),
             _task("lower", "change_case:english_lowercase", {})]
    cfg = ExperimentConfig(lambdas=(0.5, 1.0), n_calib=4, n_val=2, n_test=3, batch_size=4,
                           sampler=dict(gen_length=4, steps=4, block_length=4))
    res = run_experiment(tiny_llada, tasks, cfg, progress=False)
    methods = {r["method"] for r in res["rows"]}
    assert methods == set(METHODS)
    for r in res["rows"]:
        assert r["n"] == 3 and r["accuracy"] == r["correct"] / 3
        assert (r["ci_low"], r["ci_high"]) == wilson_interval(r["correct"], 3)
        if r["method"] != "none":
            assert r["lambda"] in (0.5, 1.0)
    assert set(res["summary"]) == set(METHODS)
    assert res["config"]["lambdas"] == [0.5, 1.0] and res["config"]["seed"] == 0 and res["config"]["sites"]
    paths = write_result(res, str(tmp_path))
    assert json.load(open(paths["json"]))["summary"]
    assert all(os.path.getsize(paths[k]) > 1000 for k in ("radar", "bars"))


def test_runner_bad_input(tiny_llada):
    t = _task("x", "punctuation:no_comma", {})
    t.target = t.target[:2]
    with pytest.raises(ValueError, match="4 source and 2 target"):
        run_experiment(tiny_llada, [t], ExperimentConfig(), progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        run_experiment(tiny_llada, [_task("x", "punctuation:no_comma", {})], ExperimentConfig(methods=("magic",)),
                       progress=False)


@pytest.mark.parametrize("k, n, low, high", [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0),
                                             (50, 100, 0.4038, 0.5962), (1, 3, 0.0615, 0.7923)])
def test_wilson_interval_known_values(k, n, low, high):
    """95% Wilson score intervals worked by hand to 4 decimals (centre ± half-width; at 0/n the upper bound is
    z²/(n + z²), at n/n the lower bound n/(n + z²)); a clamp or a wrong z would move them."""
    lo, hi = wilson_interval(k, n)
    assert abs(lo - low) < 5e-5 and abs(hi - high) < 5e-5


def test_csv_rows_are_as_wide_as_the_header(tmp_path):
    import csv
    path = tmp_path / "t.csv"
    write_csv(path, [{"a": 1, "b": "x, \"quoted\""}, {"a": 2}, {"c": 3.5}])
    rows = list(csv.reader(open(path, newline="")))
    assert rows == [["a", "b", "c"], ["1", 'x, "quoted"', ""], ["2", "", ""], ["", "", "3.5"]]
