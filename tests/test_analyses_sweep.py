"""Layer sweep: a planted effect at one layer shows up there; a raising metric keeps the rest."""
import os

import pytest
import torch

from analyses.sweep import layer_sweep
from interventions import AffineMap, Plan

KW = dict(gen_length=4, steps=4, block_length=4)


def _factory(model):
    def make(sites):
        return Plan({s: AffineMap(model.site(s).width, "scalar", torch.tensor(0.0, dtype=torch.float64))
                     for s in sites if s.startswith("blocks.1.")})     # a real effect only at layer 1
    return make


def test_planted_layer_is_found(tiny_llada, tmp_path):
    prompts = ["hello world", "the cat"]
    base = tiny_llada.generate(prompts, seed=0, **KW).texts
    metric = lambda texts: float(sum(a != b for a, b in zip(texts, base)))   # noqa: E731
    res = layer_sweep(tiny_llada, _factory(tiny_llada), prompts, metric, hook_points=["resid_post", "mlp_out"],
                      scopes=["both", "response"], progress=False, **KW)
    assert res.baseline == 0
    by = {(r["layer"], r["hook_point"], r["scope"]): r["score"] for r in res.records}
    assert by[(0, "resid_post", "both")] == 0 and by[(0, "mlp_out", "both")] == 0
    assert by[(1, "resid_post", "both")] > 0
    assert len(res.records) == 2 * 2 * 2
    assert os.path.getsize(res.plot(str(tmp_path / "s.png"))) > 3000


def test_metric_error_is_recorded(tiny_llada):
    calls = {"n": 0}

    def metric(texts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("judge down")
        return 1.0
    res = layer_sweep(tiny_llada, _factory(tiny_llada), ["hi"], metric, hook_points=["resid_post"], progress=False, **KW)
    errs = [r for r in res.records if r.get("error")]
    assert len(errs) == 1 and "judge down" in errs[0]["error"] and errs[0]["layer"] == 0
    assert res.records[1]["score"] == 1.0
    with pytest.raises(ValueError, match="empty prompt set"):
        layer_sweep(tiny_llada, _factory(tiny_llada), [], metric)
