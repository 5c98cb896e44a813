"""A fast smoke run of the demo pipeline on the packaged organism writes every report file, with damage next
to accuracy, every generation saved, and a re-run that generates nothing again."""

import json
import os

import pytest

from mdm_lens.organisms import available


@pytest.mark.skipif("tiny-mdm" not in available(), reason="the tiny-mdm organism is not packaged")
def test_quick_demo_writes_the_report(tmp_path):
    from analyses.studies.demo import run_demo, table
    from analyses.stats import wilson_interval

    out = str(tmp_path / "report")
    summary = run_demo(out, "tiny-mdm", quick=True, progress=False)
    for f in (
        "summary.md",
        "summary.json",
        "effects.csv",
        "effects.png",
        "composition.csv",
        "composition.png",
        "experiment/result.json",
        "experiment/rows.csv",
        "experiment/methods.png",
        "experiment/constraints.png",
        "experiment/generations.jsonl",
        "experiment/config.json",
        "composition/generations.jsonl",
    ):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    data = json.load(open(os.path.join(out, "summary.json")))["ifeval"]
    assert set(data["methods"]) == set(summary["ifeval"]["methods"]) and "none" in data["methods"]
    gens = [json.loads(l) for l in open(os.path.join(out, "experiment", "generations.jsonl"))]
    for m, s in data["methods"].items():
        k = round(s["accuracy"] * s["n"])
        assert abs(s["accuracy"] - k / s["n"]) < 1e-12
        assert (s["ci_low"], s["ci_high"]) == pytest.approx(wilson_interval(k, s["n"]))
        test = [g for g in gens if g["method"] == m and g["split"] == "test"]
        assert len(test) == s["n"] and s["degenerate"] == pytest.approx(sum(g["degenerate"] for g in test) / s["n"])
    md = open(os.path.join(out, "summary.md")).read()
    for needle in (
        "mean NLL/token",
        "degenerate",
        "λ grid",
        "validation",
        "n per task",
        "Sites:",
        "best",
        "worst",
        "A = map for",
        "composition.png",
        "effects.png",
    ):
        assert needle in md, needle
    assert "NLL" in table(summary)
    # the terminal gives summary.md's verdicts row for row (as tests/test_verdicts_terminal.py), and says "smoke"
    from test_verdicts_terminal import MD_ROW, TERM_ROW, _rows

    term = table(summary)
    assert len(_rows(md, MD_ROW)) >= 4 and _rows(term, TERM_ROW) == _rows(md, MD_ROW)
    assert term.startswith("SMOKE RUN (--quick)")
    # the refusal and ILRR sections (analyses.studies.refusal_study / ilrr_study): the summary.json contract
    full = json.load(open(os.path.join(out, "summary.json")))
    assert set(full["refusal"]["best"]) == {"layer", "role", "scope"}
    for key, rates in (("refusal", ("baseline_rate", "steered_rate")), ("ilrr", ("baseline_rate", "ilrr_rate"))):
        assert all(0 <= full[key][r] <= 1 for r in rates), key
    # the rest of the contract: seconds, unsteered accuracy per constraint, every generation in one file beside it
    assert full["seconds"] > 0 and full["model"] == "tiny-mdm"
    base = full["ifeval"]["baseline_per_constraint"]
    assert set(base) == {t["name"] for t in full["ifeval"]["tasks"]} and all(
        0 <= b["accuracy"] <= 1 for b in base.values()
    )
    every = [json.loads(l) for l in open(os.path.join(out, "generations.jsonl"))]
    assert len(every) == full["generations"] and {g["section"] for g in every} == {
        "experiment",
        "composition",
        "refusal",
        "ilrr",
    }
    assert sum(g["section"] == "experiment" for g in every) == len(gens)
    for f in ("refusal_sweep.png", "ilrr.png", "refusal/generations.jsonl", "ilrr/generations.jsonl"):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    assert "## Refusal ablation" in md and "## ILRR" in md and "87.56%" in md
    assert full["views"]["files"] == ["view_ifeval.html", "view_refusal.html", "view_ilrr.html"]  # analyses.view
    assert "## Trace viewers" in md and all(os.path.getsize(os.path.join(out, f)) > 0 for f in full["views"]["files"])
    # a second run into the same folder resumes: every generation is on disk already
    before = open(os.path.join(out, "experiment", "result.json")).read()
    from analyses.studies import demo, experiment

    calls = []
    orig = experiment.generation_work

    def counting(*a, **k):
        work = orig(*a, **k)
        return lambda item: calls.append(item) or work(item)

    experiment.generation_work = demo.generation_work = counting
    try:
        run_demo(out, "tiny-mdm", quick=True, progress=False)
    finally:
        experiment.generation_work = demo.generation_work = orig
    assert not calls and open(os.path.join(out, "experiment", "result.json")).read() == before


def test_protocol_composition_and_effects_fit_once(tiny_llada, tmp_path):
    """The demo's walk: the protocol fits each (task, method) plan once; composition and effects reuse the
    same setup, so they collect and fit nothing again."""
    from analyses.effects import step_effects
    from analyses.studies.demo import composition
    from analyses.studies.experiment import ExperimentConfig, run_experiment, setup_experiment
    from test_experiment import CFG, _tasks

    tasks = _tasks()
    cfg = ExperimentConfig(**{**CFG, "lambdas": (1.0,), "methods": ("none", "linear_act")})
    setup = setup_experiment(tiny_llada, tasks, cfg)
    res = run_experiment(tiny_llada, tasks, cfg, progress=False, out=str(tmp_path / "run"), setup=setup)
    assert (setup.plans.fits, setup.plans.collections) == (2, 2)  # linear_act per task; one calibration each
    chosen = {r["task"]: r["lambda"] for r in res["rows"] if r["method"] == "linear_act"}
    rows = composition(tiny_llada, tasks, chosen, cfg, setup, str(tmp_path / "comp"))
    assert {r["plan"] for r in rows} == {"none", "A", "B", "A+B"} and all(r["n"] == 3 for r in rows)
    step_effects(tiny_llada, ["hello"], setup.plans.plan("lower", "linear_act", 1.0), **cfg.sampler)
    assert (setup.plans.fits, setup.plans.collections) == (2, 2)
    # without a shared setup, composition fits its own maps: the count above is what the sharing saves
    fresh = setup_experiment(tiny_llada, tasks, cfg)
    composition(tiny_llada, tasks, chosen, cfg, fresh, str(tmp_path / "comp2"))
    assert fresh.plans.fits == 2
