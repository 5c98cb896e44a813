"""The paper-protocol runner end to end on a tiny model with small sizes."""

import json
from types import SimpleNamespace
import os

import pytest
import torch

from analyses.studies.experiment import METHODS, EvalRecord, ExperimentConfig, Task, run_experiment, write_result
from analyses.records import write_csv
from analyses.stats import wilson_interval

PLAIN = ["hello world", "the cat is good", "write a story", "a dog and a cat", "the sun and the moon"]


def _task(name, iid, kwargs):
    recs = [EvalRecord(p + " no comma please", [iid], [kwargs], i) for i, p in enumerate(PLAIN)]
    return Task(name, PLAIN[:4], [p + " please" for p in PLAIN[:4]], recs[:2], recs[2:])


CFG = dict(
    lambdas=(0.5, 1.0),
    n_calib=4,
    n_val=2,
    n_test=3,
    batch_size=2,
    mc_num=4,
    mc_batch=4,
    sampler=dict(gen_length=4, steps=4, block_length=4),
)


def _tasks():
    return [_task("no_comma", "punctuation:no_comma", {}), _task("lower", "change_case:english_lowercase", {})]


class CountingGenerate:
    """Counts the real `generate` calls of a model (the calls still run)."""

    def __init__(self, model, monkeypatch):
        self.calls, self._orig = 0, model.generate

        def generate(*a, **k):
            self.calls += 1
            return self._orig(*a, **k)

        monkeypatch.setattr(model, "generate", generate)


def test_runner_end_to_end(tiny_llada, tmp_path):
    cfg = ExperimentConfig(**CFG)
    res = run_experiment(tiny_llada, _tasks(), cfg, progress=False, out=str(tmp_path / "run"))
    methods = {r["method"] for r in res["rows"]}
    assert methods == set(METHODS)
    gens = [json.loads(l) for l in open(tmp_path / "run" / "generations.jsonl")]
    # unsteered val + test, each steered method x 2 lambdas on val, each steered method on test; per task
    k = len(METHODS) - 1
    assert len(gens) == 2 * (2 + 3 + k * 2 * 2 + k * 3)
    for g in gens:
        assert {
            "task",
            "split",
            "method",
            "lambda",
            "prompt",
            "text",
            "strict",
            "loose",
            "nll",
            "degenerate",
            "reasons",
            "seed",
            "rank",
            "n_tokens",
        } <= set(g)
        assert len(g["strict"]) == len(g["instructions"]) == 1 and g["rank"] == 0
        assert g["degenerate"] == bool(g["reasons"])
        assert g["nll"] is None or g["nll"] > 0
    for r in res["rows"]:
        mine = [g for g in gens if g["task"] == r["task"] and g["method"] == r["method"] and g["split"] == "test"]
        assert r["n"] == 3 == len(mine) and r["correct"] == sum(g["follow_strict"] for g in mine)
        assert (r["ci_low"], r["ci_high"]) == wilson_interval(r["correct"], 3)
        assert r["degenerate"] == sum(g["degenerate"] for g in mine) / 3
        if r["method"] != "none":
            assert r["lambda"] in (0.5, 1.0) and all(g["lambda"] == r["lambda"] for g in mine)
            c = res["lambda_choice"][f"{r['task']}|{r['method']}"]
            assert set(c["validation"]) == {"0.5", "1.0"}
    assert set(res["summary"]) == set(METHODS)
    assert res["config"]["lambdas"] == [0.5, 1.0] and res["config"]["seed"] == 0 and res["config"]["sites"]
    paths = write_result(res, str(tmp_path / "run"))
    assert json.load(open(paths["json"]))["summary"]
    assert all(os.path.getsize(paths[k]) > 1000 for k in ("methods", "constraints"))
    md = open(paths["md"]).read()
    assert "mean NLL/token" in md and "degenerate" in md and "λ grid [0.5, 1.0]" in md and "worst" in md


def test_per_timestep_linear_act_fits_one_map_per_t(tiny_llada):
    """linear_act_t: Linear-ACT maps fitted on activations of real generations at the steps where 1, 2/3 and 1/3
    of the response is masked; at run time the map whose t interval holds ctx.t acts."""
    from analyses.studies.experiment import PlanCache, default_sites
    from interventions import fit_map
    from interventions.restrict import TimestepSchedule

    cfg = ExperimentConfig(**CFG)
    sites, rsites = default_sites(tiny_llada)
    cache = PlanCache(tiny_llada, _tasks(), cfg, sites[:2], rsites)
    plan = cache.plan("no_comma", "linear_act_t", 1.0)
    src, tgt = cache.step_activations("no_comma")
    assert sorted(src) == [0, 1, 3]  # 4 steps: t = 1, 0.75, 0.25 are the nearest to the levels
    assert [a.meta["t"] for a in src.values()] == [1.0, 0.75, 0.25]
    for site in sites[:2]:
        sched = plan.maps[site][0]
        assert isinstance(sched, TimestepSchedule) and len(sched.entries) == 3
        assert sched.entries[0][0] == 0.0 and sched.entries[-1][1] == 1.0
        x = torch.randn(2, 3, sched.d, dtype=torch.float32)
        for step, acts in src.items():
            t = acts.meta["t"]
            ref = fit_map("linear_act", acts[site], tgt[step][site])
            torch.testing.assert_close(sched(x, SimpleNamespace(t=t)), ref(x, None))
        assert torch.equal(sched(x, SimpleNamespace(t=None)), x)  # outside a denoising loop: untouched


def test_resume_redoes_nothing_and_kill_midway(tiny_llada, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    cfg = ExperimentConfig(**{**CFG, "methods": ("none", "mean_act", "linear_act")})
    first = run_experiment(tiny_llada, _tasks()[:1], cfg, progress=False, out=out)
    write_result(first, out)
    ref = open(os.path.join(out, "result.json")).read()
    gens = open(os.path.join(out, "generations.jsonl")).read().splitlines(keepends=True)
    counter = CountingGenerate(tiny_llada, monkeypatch)
    again = run_experiment(tiny_llada, _tasks()[:1], cfg, progress=False, out=out)
    assert counter.calls == 0
    write_result(again, out)
    assert open(os.path.join(out, "result.json")).read() == ref
    # a kill midway: half the lines survive, the last one torn
    half = len(gens) // 2
    with open(os.path.join(out, "generations.jsonl"), "w") as f:
        f.writelines(gens[:half])
        f.write(gens[half][: len(gens[half]) // 2])
    resumed = run_experiment(tiny_llada, _tasks()[:1], cfg, progress=False, out=out)
    assert 0 < counter.calls < len(gens) // cfg.batch_size
    write_result(resumed, out)
    assert open(os.path.join(out, "result.json")).read() == ref
    assert sorted(open(os.path.join(out, "generations.jsonl")).read().splitlines()) == sorted(
        l.rstrip("\n") for l in gens
    )


def test_changed_config_refuses_to_mix(tiny_llada, tmp_path):
    out = str(tmp_path / "run")
    cfg = ExperimentConfig(**{**CFG, "methods": ("none",)})
    run_experiment(tiny_llada, _tasks()[:1], cfg, progress=False, out=out)
    with pytest.raises(ValueError, match=r"another config.*experiment\.seed: 0 -> 1"):
        run_experiment(
            tiny_llada,
            _tasks()[:1],
            ExperimentConfig(**{**CFG, "methods": ("none",), "seed": 1}),
            progress=False,
            out=out,
        )


def test_runner_bad_input(tiny_llada):
    t = _task("x", "punctuation:no_comma", {})
    t.target = t.target[:2]
    with pytest.raises(ValueError, match="4 source and 2 target"):
        run_experiment(tiny_llada, [t], ExperimentConfig(), progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        run_experiment(
            tiny_llada, [_task("x", "punctuation:no_comma", {})], ExperimentConfig(methods=("magic",)), progress=False
        )


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (1, 3, 0.0615, 0.7923),
    ],
)
def test_wilson_interval_known_values(k, n, low, high):
    """95% Wilson score intervals worked by hand to 4 decimals (centre ± half-width; at 0/n the upper bound is
    z²/(n + z²), at n/n the lower bound n/(n + z²)); a clamp or a wrong z would move them."""
    lo, hi = wilson_interval(k, n)
    assert abs(lo - low) < 5e-5 and abs(hi - high) < 5e-5


def test_csv_rows_are_as_wide_as_the_header(tmp_path):
    import csv

    path = tmp_path / "t.csv"
    write_csv(path, [{"a": 1, "b": 'x, "quoted"'}, {"a": 2}, {"c": 3.5}])
    rows = list(csv.reader(open(path, newline="")))
    assert rows == [["a", "b", "c"], ["1", 'x, "quoted"', ""], ["2", "", ""], ["", "", "3.5"]]


def test_report_files_are_written_whole(tmp_path):
    """A writer that fails midway leaves the previous file as it was (no half-written CSV / JSON)."""
    from analyses.records import write_json

    class Unprintable:
        def __str__(self):
            raise RuntimeError("boom")

    path = tmp_path / "t.csv"
    write_csv(path, [{"a": 1}])
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        write_csv(path, [{"a": 2}] * 1000 + [{"a": Unprintable()}])
    assert path.read_bytes() == before
    jpath = tmp_path / "t.json"
    write_json(jpath, {"a": 1})
    with pytest.raises(RuntimeError, match="boom"):
        write_json(jpath, {"a": list(range(1000)), "b": Unprintable()})
    assert json.loads(jpath.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == [
        "t.csv",
        "t.json",
    ]
