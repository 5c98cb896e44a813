"""Refusal-ablation study: every generation saved and re-scored from its text, the cell chosen on validation
only, test rates with Wilson intervals, a resumed run that generates nothing, and the paper comparison computed
from the numbers (not written by hand)."""

import json
import os

import pytest

from mdm_lens.organisms import available

ORGANISM = "tiny-mdm" if "tiny-mdm" in available() else "tiny-if"  # the fast tests keep the tiny organisms


@pytest.mark.skipif(ORGANISM not in available(), reason=f"the {ORGANISM} organism is not packaged")
def test_quick_study_saves_every_generation_and_chooses_on_validation(tmp_path):
    from analyses.refusal import is_refusal
    from analyses.studies.refusal_study import QUICK, RefusalConfig, run_refusal_study
    from analyses.stats import wilson_interval
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained(ORGANISM)
    cfg = RefusalConfig(**QUICK)
    out = str(tmp_path / "refusal")
    res = run_refusal_study(model, cfg, out=out, model_name=ORGANISM, progress=False)
    n_cells = len(cfg.layers) * len(cfg.roles) * len(cfg.scopes)
    assert len(res.records) == cfg.n_val * (1 + n_cells) + 2 * (cfg.n_test + cfg.n_harmless) + cfg.n_harmless
    lines = open(os.path.join(out, "generations.jsonl")).read().splitlines()
    assert len(lines) == len(res.records)
    for r in res.records:
        assert r["refusal"] == is_refusal(r["text"]) and r["task"] == "refusal" and r["seed"] == cfg.seed
        assert (r["nll"] is None) == (r["split"] == "val" or r["n_tokens"] == 0)
    val = [r for r in res.records if r["split"] == "val"]
    for cell in res.sweep:
        mine = [r for r in val if (r["layer"], r["role"], r["scope"]) == (cell["layer"], cell["role"], cell["scope"])]
        assert len(mine) == cfg.n_val and cell["score"] == sum(r["refusal"] for r in mine) / cfg.n_val
    allowed = [c for c in res.sweep if c["degenerate"] <= res.best["cap"]] or res.sweep
    assert res.best["score"] == min(c["score"] for c in allowed)
    j = res.to_json()
    assert set(j["best"]) == {"layer", "role", "scope"}
    harmful_none = [r for r in res.records if r["split"] == "test" and r["method"] == "none" and r["harmful"]]
    k = sum(r["refusal"] for r in harmful_none)
    assert j["baseline_rate"] == k / cfg.n_test
    assert (res.row("none", "harmful")["ci_low"], res.row("none", "harmful")["ci_high"]) == wilson_interval(
        k, cfg.n_test
    )
    steered = [r for r in res.records if r["split"] == "test" and r["method"] != "none" and r["harmful"]]
    assert {(r["layer"], r["role"], r["scope"]) for r in steered} == {tuple(j["best"].values())}
    assert j["steered_rate"] == sum(r["refusal"] for r in steered) / cfg.n_test
    added = [r for r in res.records if r["method"] == "actadd"]  # the induction arm: harmless requests only
    assert len(added) == cfg.n_harmless and not any(r["harmful"] for r in added)
    assert {(r["layer"], r["role"], r["scope"]) for r in added} == {(j["best"]["layer"], j["best"]["role"], "all")}
    assert j["induced_rate"] == sum(r["refusal"] for r in added) / cfg.n_harmless
    md = res.table_markdown()
    assert "| actadd | harmless |" in md and "direction added (harmless requests)" in md
    assert "87.56% -> 0.00%" in md and "| none | harmful |" in md and "degenerate" in md
    png = res.plot(str(tmp_path / "sweep.png"))
    assert os.path.getsize(png) > 0
    again = run_refusal_study(model, cfg, out=out, model_name=ORGANISM, progress=False)  # resumes: nothing new
    assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(j, sort_keys=True)
    assert open(os.path.join(out, "generations.jsonl")).read().splitlines() == lines


def _result(base, steer, sweep):
    from analyses.studies.refusal_study import RefusalStudyResult

    def row(m, p, rate):
        return {
            "method": m,
            "prompts": p,
            "rate": rate,
            "ci_low": max(0, rate - 0.1),  # noqa: E731
            "ci_high": min(1, rate + 0.1),
            "n": 10,
            "nll": 1.0,
            "degenerate": 0.0,
            "answered": 1.0,
        }

    test = [
        row("none", "harmful", base),
        row("directional_ablation", "harmful", steer),
        row("none", "harmless", 0.0),
        row("directional_ablation", "harmless", 0.0),
    ]
    return RefusalStudyResult(
        "m",
        {
            "n_layers": 4,
            "n_calib": 8,
            "n_val": 10,
            "layers": [0, 1, 2, 3],
            "roles": ["resid_post", "attn_out"],
            "scopes": ["prompt", "all"],
        },
        {"rate": base},
        sweep,
        dict(sweep[0], cap=0.2),
        test,
    )


def test_paper_comparison_is_computed_from_the_numbers():
    def cells(f):
        return [
            {"layer": l, "role": p, "scope": s, "score": f(l, p, s), "degenerate": 0.0}  # noqa: E731
            for l in range(4)
            for p in ("resid_post", "attn_out")
            for s in ("prompt", "all")
        ]

    like_paper = _result(
        0.9, 0.0, cells(lambda l, p, s: 0.1 * (l != 2) + 0.2 * (p != "resid_post") + 0.3 * (s != "all"))
    )
    assert [c["agrees"] for c in like_paper.comparison()] == [True, True, True, True]
    unlike = _result(0.9, 0.6, cells(lambda l, p, s: 0.1 * (l != 0) + 0.2 * (p != "attn_out") + 0.3 * (s != "prompt")))
    comp = unlike.comparison()
    assert [c["agrees"] for c in comp] == [False, False, False, False]
    assert "layer 0" in comp[1]["organism"] and "attn_out" in comp[2]["organism"]
    flat = _result(0.9, 0.0, cells(lambda l, p, s: 0.5))
    assert [c["agrees"] for c in flat.comparison()][1:] == [None, None, None]
    moot = _result(0.1, 0.0, cells(lambda l, p, s: 0.1 * (l != 2)))
    assert all(c["agrees"] is None for c in moot.comparison())
    assert "cannot tell" in moot.table_markdown()


def test_bad_settings_are_refused_naming_the_value(tiny_llada):
    from analyses.studies.refusal_study import RefusalConfig, run_refusal_study

    with pytest.raises(ValueError, match=r"layers \[99\] out of range.*0\.\.1"):
        run_refusal_study(tiny_llada, RefusalConfig(layers=(99,)), progress=False)
    with pytest.raises(ValueError, match="unknown token scope 'both'"):
        run_refusal_study(tiny_llada, RefusalConfig(scopes=("both",)), progress=False)
    with pytest.raises(ValueError, match="max_degenerate=2"):
        run_refusal_study(tiny_llada, RefusalConfig(max_degenerate=2), progress=False)
