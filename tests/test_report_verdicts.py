"""Reports that give a verdict (issue 25, point 1): verdicts with the difference interval and the damage, λ-edge
warnings instead of a mislabelled column, under-determined fits warned, empty outputs never scored as text."""

import pytest
import torch

from analyses.studies.experiment import EvalRecord, ExperimentConfig, Item, generation_work, warn_underdetermined
from analyses.studies.experiment_report import choose_lambda, edge_warning, methods_table, row_notes
from analyses.studies.verdicts import difference_interval, verdict, verdict_lines


def test_difference_interval_is_newcombes():
    # Newcombe (1998), Stat Med 17:873, Table II, method 10 (published to 4 decimals)
    cases = {
        (56, 70, 48, 80): (0.0524, 0.3339),
        (9, 10, 3, 10): (0.1705, 0.8090),
        (6, 7, 2, 7): (0.0582, 0.8062),
        (5, 56, 0, 29): (-0.0381, 0.1926),
    }
    for (k1, n1, k0, n0), (lo_ref, hi_ref) in cases.items():
        d, lo, hi = difference_interval(k1, n1, k0, n0)
        assert d == pytest.approx(k1 / n1 - k0 / n0)
        assert lo == pytest.approx(lo_ref, abs=1e-4) and hi == pytest.approx(hi_ref, abs=1e-4)
    d, lo, hi = difference_interval(56, 70, 48, 80)
    assert (
        verdict((d, lo, hi)) == "helped"
        and verdict((-d, -hi, -lo)) == "hurt"
        and verdict((0.1, -0.1, 0.3), n=20) == "no detectable effect (n=20)"
        and verdict((d, lo, hi), lower_is_better=True) == "hurt"  # a refusal rate that went up
    )


def _summary(acc, n, nll, deg):
    return {
        "accuracy": acc,
        "n": n,
        "ci_low": 0,
        "ci_high": 1,
        "nll": nll,
        "degenerate": deg,
        "lambda": {},
        "flags": {},
        "edges": {},
    }


def test_verdict_lines_say_helped_hurt_or_nothing_with_damage():
    summary = {
        "none": _summary(0.25, 48, 1.8, 0.0),
        "mean_act": _summary(0.75, 48, 2.1, 0.05),
        "gaussian_ot": _summary(0.0, 48, 4.0, 0.9),
        "linear_act": _summary(0.3, 48, 1.9, 0.0),
    }
    lines = "\n".join(verdict_lines(summary))
    assert "| mean_act | **helped** | 75.0% vs 25.0% | +50.0 [+" in lines
    assert "| gaussian_ot | **hurt** |" in lines and "90% degenerate texts (unsteered 0%)" in lines
    assert "| linear_act | **no detectable effect (n=48)** |" in lines and "NLL 1.90 vs 1.80 nats/token" in lines
    assert "helped: mean_act; hurt: gaussian_ot; no detectable effect (n=48): linear_act." in lines


def _val_recs(task, method, lam_acc):
    recs = []
    for lam, acc in lam_acc.items():
        for i in range(4):
            recs.append(
                {
                    "task": task,
                    "split": "val",
                    "method": method,
                    "lambda": lam,
                    "follow_strict": i < acc * 4,
                    "nll": 1.0,
                    "degenerate": False,
                    "n_tokens": 4,
                }
            )
    return recs


def test_lambda_at_the_edge_is_a_warning_not_a_baseline_column():
    cfg = ExperimentConfig(lambdas=(0.1, 0.5, 1.0))
    recs = _val_recs("t", "none", {None: 0.25}) + _val_recs("t", "m", {0.1: 1.0, 0.5: 0.5, 1.0: 0.25})
    c = choose_lambda(recs, "t", "m", cfg)
    assert c["lambda"] == 0.1 and c["edge"] == "lower"
    recs = _val_recs("t", "none", {None: 0.25}) + _val_recs("t", "m", {0.1: 0.25, 0.5: 1.0, 1.0: 0.25})
    assert choose_lambda(recs, "t", "m", cfg)["edge"] is None
    # flat validation: the tie rule picks the smallest λ, which says nothing about an optimum beyond the grid
    recs = _val_recs("t", "none", {None: 0.25}) + _val_recs("t", "m", {0.1: 0.5, 0.5: 0.5, 1.0: 0.5})
    c = choose_lambda(recs, "t", "m", cfg)
    assert c["lambda"] == 0.1 and c["edge"] is None and c["flat"]
    # a tie with the inner neighbour only (the score falls further in): no edge warning either, and not flat
    recs = _val_recs("t", "none", {None: 0.25}) + _val_recs("t", "m", {0.1: 0.5, 0.5: 0.5, 1.0: 0.25})
    c = choose_lambda(recs, "t", "m", cfg)
    assert c["edge"] is None and not c["flat"]
    # the upper edge strictly above its neighbour: the optimum may lie beyond the grid
    recs = _val_recs("t", "none", {None: 0.25}) + _val_recs("t", "m", {0.1: 0.25, 0.5: 0.5, 1.0: 0.75})
    assert choose_lambda(recs, "t", "m", cfg)["edge"] == "upper"
    rows = [
        {"method": "none"},
        {"method": "m", "lambda_edge": "lower", "baseline_flag": None},
        {"method": "m2", "lambda_edge": None, "baseline_flag": None},
    ]
    warn = "\n".join(edge_warning(rows, cfg.lambdas))
    assert "λ at the edge of the grid [0.1, 0.5, 1.0] in 1 of 2" in warn and "1 at the lower edge" in warn
    assert row_notes(rows[1]) == "⚠ λ at the grid's lower edge" and row_notes(rows[2]) == "-"
    one = {**_summary(0.2, 4, 1.0, 0.0), "lambda": {"t": 0.1}, "edges": {"t": "lower"}}
    table = "\n".join(methods_table({"m": one}))
    assert "equals baseline" not in table and "⚠ t: λ at the grid's lower edge" in table


def test_underdetermined_fits_warn():
    src = {"s": torch.randn(6, 64)}
    with pytest.warns(UserWarning, match="gaussian_ot fitted on 6 samples .* fewer than the 65"):
        assert warn_underdetermined("gaussian_ot", src, ["s"])
    assert warn_underdetermined("linear_act", src, ["s"]) is None
    assert warn_underdetermined("gaussian_ot", {"s": torch.randn(80, 64)}, ["s"]) is None


def test_empty_outputs_are_never_scored_as_text(tiny_llada):
    eos = tiny_llada.tokenizer.eos_token_id

    def only_eos(logits, ctx):  # a broken map: the model says nothing
        out = torch.full_like(logits, -1e4)
        out[..., eos] = 1e4
        return out

    cfg = ExperimentConfig(sampler=dict(gen_length=4, steps=4, block_length=4), mc_num=4, mc_batch=4)
    work = generation_work(tiny_llada, cfg, lambda task, method, lam: {"hook_logits": only_eos})
    evals = [EvalRecord("Write about the sea. Do not use any commas.", ["punctuation:no_comma"], [{}], 0)]
    recs = work(Item(("gen",), 1, ("t", "test", "m", 1.0, evals)))
    assert recs[0]["text"] == "" and recs[0]["degenerate"] and "empty" in recs[0]["reasons"]
    assert recs[0]["follow_strict"] is False and recs[0]["follow_loose"] is False


def _refusal_result(tmp_path=None):
    from analyses.studies.refusal_study import RefusalStudyResult

    sweep = [
        dict(layer=layer, role="resid_post", scope="all", score=s, degenerate=d)
        for layer, s, d in ((0, 0.6, 0.0), (1, 0.05, 0.92), (2, 0.3, 0.0))
    ]  # layer 1 refuses least: broken
    best = {**sweep[2], "cap": 0.5, "capped": True, "within_cap": True}
    test = [
        {"method": m, "prompts": p, "rate": r, "ci_low": r - 0.1, "ci_high": r + 0.1, "degenerate": 0.0}
        for m, p, r in (
            ("none", "harmful", 0.9),
            ("directional_ablation", "harmful", 0.3),
            ("none", "harmless", 0.1),
            ("directional_ablation", "harmless", 0.1),
        )
    ]
    cfg = dict(scopes=["all"], roles=["resid_post"], layers=[0, 1, 2], n_val=4, n_layers=3)
    return RefusalStudyResult("m", cfg, {"rate": 0.9}, sweep, best, test)


def test_refusal_findings_do_not_average_over_broken_text(tmp_path):
    res = _refusal_result()
    assert [res.disqualified(c) for c in res.sweep] == [False, True, False]
    layer = next(r for r in res.comparison() if r["finding"].startswith("strongest layer"))
    assert layer["organism"].startswith("layer 2 (0: 60.0%, 2: 30.0%)")  # layer 1 (5%, broken) is out
    path = res.plot(str(tmp_path / "refusal_sweep.png"))
    assert (tmp_path / "refusal_sweep.png").stat().st_size > 1000 and path.endswith(".png")
