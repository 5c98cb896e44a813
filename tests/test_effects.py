"""Per-timestep effects: zero steering gives zero effect at every step; real steering shows up."""

import os

import torch

from analyses.effects import step_effects
from interventions import LinearACT, Plan

KW = dict(gen_length=8, steps=8, block_length=4)


def _plan(model):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(16, 64, generator=g, dtype=torch.float64)
    return Plan({"blocks.1.hook_resid_post": LinearACT.fit(A, A * 3 + 2)})


def test_zero_strength_has_zero_effect_everywhere(tiny_llada):
    eff = step_effects(tiny_llada, ["hello world", "the cat"], _plan(tiny_llada).strength(0.0), **KW)
    assert len(eff.records) == 8
    for r in eff.records:
        assert r["kl_masked"] < 1e-6 and r["differ_share"] == 0 and r["delta_norm:blocks.1.hook_resid_post"] < 1e-5
    assert not eff.differs.any()


def test_real_steering_has_effect_and_plots(tiny_llada, tmp_path):
    eff = step_effects(tiny_llada, ["hello world", "the cat"], _plan(tiny_llada), **KW)
    assert eff.records[0]["kl_masked"] > 1e-3 and eff.records[0]["delta_norm:blocks.1.hook_resid_post"] > 1
    assert [r["t"] for r in eff.records][0] == 1.0
    assert eff.unmask_step_steer.shape == (2, 8) and int(eff.unmask_step_steer.max()) <= 7
    path = eff.plot(str(tmp_path / "effects.png"))
    assert os.path.getsize(path) > 5000
