"""Plans on a model: steering through hooks, restrictions, composition, folding, save/load."""

import pytest
import torch

from interventions import (
    AffineMap,
    LinearACT,
    MeanACT,
    Plan,
    TimestepSchedule,
    ablation_everywhere,
    fold,
    restrict,
    support_bounds,
)
from mdm_lens.context import StepContext

F64 = torch.float64


def _rand_map(d, seed, kind="diag"):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(32, d, generator=g, dtype=F64)
    B = torch.randn(32, d, generator=g, dtype=F64) * 1.7 + 0.4
    return LinearACT.fit(A, B) if kind == "diag" else MeanACT.fit(A, B)


def _gen(model, **kw):
    return model.generate(["hello world", "the cat is good"], gen_length=8, steps=8, block_length=4, **kw)


def test_strength_zero_plan_is_no_steering(tiny_llada):
    site = "blocks.1.mlp.hook_out"
    plan = Plan({site: _rand_map(tiny_llada.site(site).width, 0)})
    base = _gen(tiny_llada)
    assert torch.equal(_gen(tiny_llada, plan=plan.strength(0.0)).tokens, base.tokens)
    _, c0 = tiny_llada.run_with_cache(base.sequences[:, :12], [site])
    with tiny_llada.steer(plan):
        _, c1 = tiny_llada.run_with_cache(base.sequences[:, :12], [site])
    # the cache sees the steered activation (hooks run in order: the plan's map first)
    assert not torch.allclose(c0[site], c1[site])


def test_plan_sum_applies_in_order(tiny_llada):
    site = "blocks.0.mlp.hook_pre"
    d = tiny_llada.site(site).width
    a, b = _rand_map(d, 1), _rand_map(d, 2, "mean")
    ids = torch.randint(0, 250, (2, 9))
    with tiny_llada.steer(Plan({site: a}) + Plan({site: b})):
        summed = tiny_llada(ids)
    with tiny_llada.steer(Plan({site: b @ a})):
        composed = tiny_llada(ids)
    torch.testing.assert_close(summed, composed, atol=1e-4, rtol=1e-4)


def test_width_mismatch_names_site_and_both_widths(tiny_llada):
    with pytest.raises(ValueError, match=r"width 7.*blocks\.0\.hook_resid_post.*width 64"):
        with tiny_llada.steer(Plan({"blocks.0.hook_resid_post": _rand_map(7, 0)})):
            pass
    with pytest.raises(KeyError, match="closest"):
        with tiny_llada.steer(Plan({"blocks.0.hook_resid_pots": _rand_map(64, 0)})):
            pass


def _ctx(step=None, t_masked=2):
    ids = torch.zeros(1, 6, dtype=torch.long)
    ids[0, 6 - t_masked :] = 9
    return StepContext(ids, None, 9, prompt_length=3, logits_shift=False, step=step, num_steps=8)


def test_scope_window_bounds_schedule():
    m = AffineMap(2, "identity", beta=torch.tensor([1.0, 1.0], dtype=F64))
    act = torch.zeros(1, 6, 2)
    out = restrict(m, scope="masked")(act, _ctx())
    assert out[0, :, 0].tolist() == [0, 0, 0, 0, 1, 1]
    out = restrict(m, scope="prompt")(act, _ctx())
    assert out[0, :, 0].tolist() == [1, 1, 1, 0, 0, 0]
    win = restrict(m, steps=(2, 4))
    assert win(act, _ctx(step=1)).abs().sum() == 0 and win(act, _ctx(step=3)).abs().sum() > 0
    tr = restrict(m, t_range=(0.0, 0.5))
    assert tr(act, _ctx(step=0, t_masked=3)).abs().sum() == 0  # t = 1.0
    assert tr(act, _ctx(step=0, t_masked=1)).abs().sum() > 0  # t = 1/3
    A = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=F64)
    lo, hi = support_bounds(A, "Q0")
    x = torch.tensor([[[0.5, 2.0], [0.0, 0.5]]])
    y = restrict(m, bounds=(lo, hi))(x, None)
    assert y.tolist() == [[[1.5, 2.0], [0.0, 1.5]]]  # strict: 0.0 and 2.0 untouched
    assert support_bounds(A, "Qinf") is None
    sched = TimestepSchedule([(0.5, 1.0, m), (0.0, 0.5, m.strength(2.0))])
    assert sched(act, _ctx(t_masked=3))[0, 0, 0] == 1 and sched(act, _ctx(t_masked=1))[0, 0, 0] == 2


def test_fold_equals_hooked_and_restores(tiny_llada):
    plan = Plan(
        {
            "blocks.0.mlp.hook_out": _rand_map(64, 3),
            "blocks.1.mlp.hook_pre": _rand_map(128, 4),
            "blocks.1.attn.hook_out": _rand_map(64, 5, "mean"),
        }
    ).strength(0.8)
    before = {k: v.clone() for k, v in tiny_llada.state_dict().items()}
    ids = torch.randint(0, 250, (2, 10))
    with tiny_llada.steer(plan):
        hooked_logits = tiny_llada(ids)
        hooked = _gen(tiny_llada)
    with fold(tiny_llada, plan):
        torch.testing.assert_close(tiny_llada(ids), hooked_logits, atol=1e-4, rtol=1e-4)
        folded = _gen(tiny_llada)
    assert torch.equal(folded.tokens, hooked.tokens)
    after = tiny_llada.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_fold_ablation_everywhere_and_refusals(tiny_llada):
    v = torch.randn(64, generator=torch.Generator().manual_seed(0))
    plan = ablation_everywhere(tiny_llada, v)
    ids = torch.randint(0, 250, (1, 8))
    with tiny_llada.steer(plan):
        hooked = tiny_llada(ids)
    with fold(tiny_llada, plan):
        torch.testing.assert_close(tiny_llada(ids), hooked, atol=1e-4, rtol=1e-4)
    partial = Plan({"blocks.1.hook_resid_post": plan.maps["blocks.1.hook_resid_post"]})
    before = {k: v.clone() for k, v in tiny_llada.state_dict().items()}
    with pytest.raises(ValueError, match="every residual site"):
        fold(tiny_llada, partial)
    with pytest.raises(ValueError, match="token scope"):
        fold(tiny_llada, Plan({"blocks.0.mlp.hook_out": _rand_map(64, 1)}).scope("masked"))
    with pytest.raises(ValueError, match="no single linear layer"):
        fold(tiny_llada, Plan({"blocks.0.mlp.hook_post": _rand_map(128, 1)}))
    assert all(torch.equal(before[k], v) for k, v in tiny_llada.state_dict().items())


def test_save_load_roundtrip(tmp_path, tiny_llada):
    A = torch.randn(20, 64, dtype=F64)
    plan = (
        Plan(
            {
                "blocks.0.mlp.hook_out": _rand_map(64, 6),
                "blocks.1.hook_resid_post": restrict(
                    _rand_map(64, 7, "mean"), scope="masked", steps=(1, 5), bounds=support_bounds(A, "Q5")
                ),
            }
        )
        + Plan(
            {"blocks.0.mlp.hook_out": TimestepSchedule([(0.0, 0.5, _rand_map(64, 8)), (0.5, 1.0, _rand_map(64, 9))])}
        )
    ).strength(0.6)
    path = tmp_path / "plan.safetensors"
    plan.save(path, {"note": "tiny"}, model=tiny_llada)
    back = Plan.load(path)
    assert back.sites == plan.sites and back.meta["file_metadata"] == {"note": "tiny"}
    assert back.meta["model"]["family"] == "llada" and back.meta["model"]["site_widths"]["blocks.0.mlp.hook_out"] == 64
    assert back.maps["blocks.0.mlp.hook_out"][0].meta["estimator"] == "linear_act"
    a = _gen(tiny_llada, plan=plan)
    b = _gen(tiny_llada, plan=back)
    assert torch.equal(a.tokens, b.tokens)
    (tmp_path / "evil.safetensors").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="not an mdm-lens plan"):
        Plan.load(tmp_path / "evil.safetensors")


def test_fit_schedule_and_incremental(tiny_llada):
    from interventions import fit_incremental, fit_schedule
    from mdm_lens.collect import collect

    g = torch.Generator().manual_seed(0)
    src = {1.0: torch.randn(20, 4, generator=g, dtype=F64), 0.5: torch.randn(20, 4, generator=g, dtype=F64)}
    tgt = {t: a * 2 + t for t, a in src.items()}
    sched = fit_schedule(src, tgt, "mean_act")
    assert [(lo, hi) for lo, hi, _ in sched.entries] == [(0.0, 0.75), (0.75, 1.0)]
    torch.testing.assert_close(sched.entries[1][2].beta, (tgt[1.0] - src[1.0]).mean(0))
    prompts_a, prompts_b = ["hello world", "the cat"], ["a dog and a cat", "write a story"]
    sites = ["blocks.0.mlp.hook_out", "blocks.1.mlp.hook_out"]
    collect_fn = lambda m, p, s: collect(m, p, s, gen_length=4, progress=False)  # noqa: E731
    plan = fit_incremental(tiny_llada, sites, prompts_a, prompts_b, "mean_act", collect_opts={"gen_length": 4})
    # site 1 was fitted on activations produced with site 0 already steered
    with tiny_llada.steer(Plan({sites[0]: plan.maps[sites[0]]})):
        a1 = collect_fn(tiny_llada, prompts_a, [sites[1]])[sites[1]]
        b1 = collect_fn(tiny_llada, prompts_b, [sites[1]])[sites[1]]
    torch.testing.assert_close(plan.maps[sites[1]][0].beta, b1.mean(0) - a1.mean(0))


def test_interventions_satisfy_the_protocols():
    from interventions import ReferenceAlignment, Restricted
    from mdm_lens.protocols import Foldable, Intervention, ModelIntervention

    m = _rand_map(8, 0)
    scoped, sched = restrict(m, scope="masked"), TimestepSchedule([(0.0, 1.0, m)])
    ra = ReferenceAlignment([5, 6, 7], ["blocks.0.hook_resid_post"])
    assert isinstance(m, Foldable) and isinstance(m, Intervention)
    assert isinstance(scoped, Restricted) and isinstance(scoped, Intervention) and not isinstance(scoped, Foldable)
    assert isinstance(sched, Intervention) and not isinstance(sched, Foldable)
    assert isinstance(ra, ModelIntervention) and not isinstance(ra, Intervention)
    assert isinstance(Plan(), ModelIntervention)
    with pytest.raises(TypeError, match="site 'blocks.0.hook_out'.*function"):
        Plan({"blocks.0.hook_out": lambda act, ctx: act})
    with pytest.raises(TypeError, match="Plan.of takes whole-model"):
        Plan.of(m)


def test_scope_of_a_plan_with_reference_alignment(tiny_llada):
    from interventions import ReferenceAlignment

    ra = ReferenceAlignment([5, 6, 7], ["blocks.0.hook_resid_post"], s=0.5)
    site = "blocks.1.mlp.hook_out"
    # used to wrap the alignment in Restricted, which has no attach: AttributeError on steer
    with pytest.raises(ValueError, match=r"scope\('masked'\).*ReferenceAlignment.*site_plan.scope"):
        Plan.of(ra).scope("masked")
    with pytest.raises(ValueError, match="window"):
        (Plan({site: _rand_map(64, 0)}) + Plan.of(ra)).window(steps=(0, 2))
    plan = Plan({site: _rand_map(64, 0)}).scope("masked") + Plan.of(ra)
    assert plan.extras[0] is ra and plan.maps[site][0].scope == "masked"
    assert plan.strength(0.5).extras[0].s == 0.25  # strength reaches whole-model interventions too
    with tiny_llada.steer(plan) as steered:  # attaches both kinds (was an AttributeError)
        assert steered is tiny_llada
    with pytest.raises(TypeError, match="steer takes a plan"):
        tiny_llada.steer([site])
