"""Layer sweep: a planted effect at one layer shows up there; a raising cell is recorded; all raising fails."""

import os

import pytest
import torch

from analyses.sweep import layer_sweep, sweep_sites
from interventions import AffineMap, Plan
from mdm_lens import get_act_name

KW = dict(gen_length=4, steps=4, block_length=4)


def _factory(model):
    def make(sites):
        return Plan(
            {
                s: AffineMap(model.site(s).width, "scalar", torch.tensor(0.0, dtype=torch.float64))
                for s in sites
                if s.startswith("blocks.1.")
            }
        )  # a real effect only at layer 1

    return make


def test_planted_layer_is_found(tiny_llada, tmp_path):
    prompts = ["hello world", "the cat"]
    base = tiny_llada.generate(prompts, seed=0, **KW).texts
    metric = lambda texts: float(sum(a != b for a, b in zip(texts, base)))  # noqa: E731
    res = layer_sweep(
        tiny_llada,
        _factory(tiny_llada),
        prompts,
        metric,
        roles=["resid_post", "mlp_out"],
        scopes=["all", "response"],
        progress=False,
        **KW,
    )
    assert res.baseline == 0
    by = {(r["layer"], r["role"], r["scope"]): r for r in res.records}
    assert len(res.records) == 2 * 2 * 2 and not any("error" in r for r in res.records)
    for (layer, point, scope), r in by.items():
        assert r["site"] == get_act_name(point, layer) and r["delta"] == r["score"] - res.baseline
        assert (r["score"] > 0) == (layer == 1), r  # zeroing a layer-1 site changes both texts; layer 0 nothing
    assert by[(1, "resid_post", "all")]["score"] == 2.0
    assert os.path.getsize(res.plot(str(tmp_path / "s.png"))) > 3000


def test_metric_error_is_recorded(tiny_llada):
    calls = {"n": 0}

    def metric(texts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("judge down")
        return 1.0

    res = layer_sweep(tiny_llada, _factory(tiny_llada), ["hi"], metric, roles=["resid_post"], progress=False, **KW)
    assert [r.get("error", "").split(":")[0] for r in res.records] == ["RuntimeError", ""]
    assert "judge down" in res.records[0]["error"] and res.records[0]["score"] is None
    assert res.records[1]["score"] == 1.0 and res.records[1]["delta"] == 0.0


def test_a_sweep_whose_cells_all_fail_raises(tiny_llada):
    def broken(sites):
        raise KeyError("no activations for that site")

    with pytest.raises(RuntimeError, match="every one of the 2 sweep cells failed.*no activations"):
        layer_sweep(tiny_llada, broken, ["hi"], lambda t: 1.0, roles=["mlp_out"], progress=False, **KW)


def test_bad_arguments_name_the_valid_words(tiny_llada):
    with pytest.raises(ValueError, match="empty prompt set"):
        layer_sweep(tiny_llada, _factory(tiny_llada), [], len)
    with pytest.raises(ValueError, match='"all"'):
        layer_sweep(tiny_llada, _factory(tiny_llada), ["hi"], len, scopes=["both"])
    with pytest.raises(ValueError, match="resid_post"):
        layer_sweep(tiny_llada, _factory(tiny_llada), ["hi"], len, roles=["mlp.hook_out"])


def test_sweep_sites_come_from_the_role_table(tiny_llada):
    sites = sweep_sites(tiny_llada, ["resid_post", "mlp_out"])
    assert sites == [
        "blocks.0.hook_mlp_out",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_resid_post",
    ]
    assert [tiny_llada.site(s).role for s in sites] == ["mlp_out", "resid_post"] * 2
    assert sweep_sites(tiny_llada, ["attn_out"], layers=[1]) == ["blocks.1.hook_attn_out"]
