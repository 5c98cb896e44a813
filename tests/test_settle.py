"""`analyses.settle`: single-step interventions act at exactly one step, effects are score differences against the
unsteered run, and the adaptive window spans the steps that reach the asked share of the peak."""

from __future__ import annotations

import pytest
import torch

from analyses.settle import SettleResult, adaptive_window, single_step_effects
from mdm_lens.sites import get_act_name

SETTINGS = dict(gen_length=8, steps=4, block_length=8, chat=False)
PROMPTS = ["a b c", "d e"]


def _score(texts):
    return [float(len(t)) for t in texts]


def test_single_step_plan_runs_at_that_step_only(tiny_llada):
    site = get_act_name("resid_post", 0)
    seen: dict[str, list[int]] = {"observe": []}

    def observe(act, ctx):
        seen["observe"].append(ctx.step)
        return None  # observing changes nothing

    res = single_step_effects(
        tiny_llada, PROMPTS, {"obs": {site: observe}}, _score, at_steps=[1, 3], progress=False, **SETTINGS
    )
    assert sorted(set(seen["observe"])) == [1, 3]  # never at steps 0 or 2
    assert res.effect.shape == (1, 2)
    assert torch.equal(res.effect, torch.zeros(1, 2))  # a hook that returns None is no intervention
    assert [r["step"] for r in res.records] == [1, 3] and all(r["n"] == len(PROMPTS) for r in res.records)


def test_effect_is_score_minus_unsteered(tiny_llada):
    site = get_act_name("resid_post", 0)
    plans = {"zero": {site: lambda act, ctx: torch.zeros_like(act)}}
    res = single_step_effects(tiny_llada, PROMPTS, plans, _score, at_steps=[0], progress=False, **SETTINGS)
    base = sum(_score(tiny_llada.generate(PROMPTS, seed=0, **SETTINGS).texts)) / len(PROMPTS)
    assert res.baseline == pytest.approx(base)
    rec = res.records[0]
    assert rec["effect"] == pytest.approx(rec["score"] - base)
    assert float(res.effect[0, 0]) == pytest.approx(rec["effect"])


def test_steps_out_of_range_are_refused(tiny_llada):
    with pytest.raises(ValueError, match=r"out of range.*0\.\.3"):
        single_step_effects(tiny_llada, PROMPTS, {}, _score, at_steps=[4], progress=False, **SETTINGS)


def test_adaptive_window():
    steps = [0, 1, 2, 3, 4]
    assert adaptive_window([0.0, 1.0, 3.0, 2.0, 0.5], steps, frac=0.5) == (2, 4)
    assert adaptive_window([0.0, -1.0, -3.0, -2.0, 0.5], steps, frac=0.3, sign=-1) == (1, 4)
    with pytest.raises(ValueError, match="frac"):
        adaptive_window([1.0] * 5, steps, frac=0.0)
    with pytest.raises(ValueError, match="5 effects for 4 steps"):
        adaptive_window([1.0] * 5, steps[:4])
    with pytest.raises(ValueError, match="sign="):
        adaptive_window([-1.0] * 5, steps)


def test_plot_writes_png(tmp_path):
    res = SettleResult(torch.tensor([[0.0, 1.0], [-1.0, 0.5]]), [0, 1], [0, 1], 0.5)
    out = res.plot(tmp_path / "settle.png")
    assert (tmp_path / "settle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.endswith("settle.png")
