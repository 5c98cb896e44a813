"""ILRR study: every generation (every baseline sample too) saved and re-scored from its text, s chosen on
validation, the reference-guided pick is the most similar sample, rates with Wilson intervals, resumable."""

import json
import os

import pytest

from mdm_lens.organisms import available

ORGANISM = "tiny-mdm" if "tiny-mdm" in available() else "tiny-if"  # the fast tests keep the tiny organisms


@pytest.mark.skipif(ORGANISM not in available(), reason=f"the {ORGANISM} organism is not packaged")
def test_quick_study_saves_every_generation_and_picks_without_an_oracle(tmp_path):
    from analyses.studies.ilrr_study import QUICK, ILRRConfig, positive, run_ilrr_study
    from analyses.stats import wilson_interval
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained(ORGANISM)
    cfg = ILRRConfig(**QUICK)
    out = str(tmp_path / "ilrr")
    res = run_ilrr_study(model, cfg, out=out, model_name=ORGANISM, progress=False)
    assert len(res.records) == cfg.n_val * (1 + len(cfg.strengths)) + cfg.n_test * (2 + cfg.k)
    lines = open(os.path.join(out, "generations.jsonl")).read().splitlines()
    assert len(lines) == len(res.records)
    for r in res.records:
        assert r["positive"] == positive(r["text"]) and r["task"] == "sentiment"
    assert res.chosen["s"] in cfg.strengths
    test = [r for r in res.records if r["split"] == "test"]
    samples = [r for r in test if r["method"] == "sample"]
    assert sorted({r["sample_index"] for r in samples}) == list(range(cfg.k))
    assert all(-1 <= r["ref_similarity"] <= 1 for r in samples)
    j = res.to_json()
    for method, key in (("none", "baseline_rate"), ("ilrr", "ilrr_rate")):
        mine = [r for r in test if r["method"] == method]
        k = sum(r["positive"] for r in mine)
        assert j[key] == k / cfg.n_test and len(mine) == cfg.n_test
        assert (res.row(method)["ci_low"], res.row(method)["ci_high"]) == wilson_interval(k, cfg.n_test)
    assert all(r["lambda"] == res.chosen["s"] for r in test if r["method"] == "ilrr")
    # the reference-guided pick: per prompt, the sample most similar to the reference
    best = {}
    for r in samples:
        if r["prompt"] not in best or r["ref_similarity"] > best[r["prompt"]]["ref_similarity"]:
            best[r["prompt"]] = r
    assert res.row("sample_best_ref")["k"] == sum(r["positive"] for r in best.values())
    md = res.table_markdown()
    assert "closest to reference" in md and "NLL" in md and "Compute" in md
    assert os.path.getsize(res.plot(str(tmp_path / "ilrr.png"))) > 0
    again = run_ilrr_study(model, cfg, out=out, model_name=ORGANISM, progress=False)
    assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(j, sort_keys=True)
    assert open(os.path.join(out, "generations.jsonl")).read().splitlines() == lines


def test_reference_similarity_of_a_text_with_itself_is_one(tiny_llada):
    import torch
    from analyses.studies.ilrr_study import pooled_response

    site = tiny_llada.site_names(["resid_post"])[-1]
    a = pooled_response(tiny_llada, ["hi there", "hello"], ["a b c", "x y"], site)
    b = pooled_response(tiny_llada, ["hi there"], ["a b c"], site)
    assert a.shape[0] == 2 and torch.allclose(a[0], b[0])
    assert not torch.allclose(a[0], a[1])


def test_bad_settings_are_refused_naming_the_value(tiny_llada):
    from analyses.studies.ilrr_study import ILRRConfig, run_ilrr_study

    with pytest.raises(ValueError, match="k=0"):
        run_ilrr_study(tiny_llada, ILRRConfig(k=0), progress=False)
    with pytest.raises(ValueError, match="empty strength grid"):
        run_ilrr_study(tiny_llada, ILRRConfig(strengths=()), progress=False)
