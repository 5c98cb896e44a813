"""Every section of the demo report gives an earned verdict beside its paper (issue 25, point 1): IFEval against
the OT-steering paper's LLaDA-8B-Instruct figures, refusal ablation against Shnaidman et al.'s 87.56% -> 0.00%,
ILRR against its paper's gain over sampling; summaries built from synthetic records."""

from analyses.studies.ilrr_study import ILRRStudyResult
from analyses.studies.kernel import rate_row
from analyses.studies.refusal_study import RefusalStudyResult
from analyses.studies.verdicts import verdict_lines


def _recs(k: int, n: int, flag: str, nll: float = 2.0, degenerate: int = 0) -> list[dict]:
    return [{flag: i < k, "nll": nll, "degenerate": i < degenerate} for i in range(n)]


def test_ifeval_verdict_has_the_papers_column():
    def acc(k, n, nll, deg):
        r = rate_row(_recs(k, n, "ok", nll, deg), "ok")
        return {"accuracy": r["rate"], "n": n, "nll": r["nll"], "degenerate": r["degenerate"]}

    summary = {"none": acc(10, 40, 2.0, 0), "linear_act": acc(30, 40, 2.3, 2), "bures_ot": acc(12, 40, 2.0, 0)}
    md = "\n".join(verdict_lines(summary))
    assert "paper (Lek et al., LLaDA-8B-Instruct, §3 / Fig. 3)" in md
    assert "| linear_act | **helped** | 75.0% vs 25.0% | +50.0 [" in md and "helped: +11.9 points" in md
    assert "NLL 2.30 vs 2.00 nats/token unsteered (+0.30), 5% degenerate texts (unsteered 0%)" in md
    assert "| bures_ot | **no detectable effect (n=40)** |" in md and "not in the paper |" in md


def _refusal(k_none: int, k_abl: int, n: int = 30, deg: int = 0) -> RefusalStudyResult:
    test = []
    for method, k, d in (("none", k_none, 0), ("directional_ablation", k_abl, deg)):
        harmful = rate_row(_recs(k, n, "refused", 2.0 + d / 10, d), "refused", method=method, prompts="harmful")
        test.append({**harmful, "answered": 1 - harmful["rate"]})
        test.append({**rate_row(_recs(2, n, "refused"), "refused", method=method, prompts="harmless"), "answered": 0.9})
    best = {"layer": 1, "role": "resid_post", "scope": "all", "score": 0.1, "cap": 0.5}
    cfg = dict(scopes=["all"], roles=["resid_post"], layers=[0, 1, 2], n_val=4, n_layers=3, n_calib=6)
    sweep = [dict(layer=l, role="resid_post", scope="all", score=0.5, degenerate=0.0) for l in (0, 1, 2)]
    return RefusalStudyResult("m", cfg, {"rate": 0.9}, sweep, best, test)


def test_refusal_verdict_a_drop_in_refusal_is_help():
    md = "\n".join(_refusal(27, 3).verdict_markdown())
    assert "refusal rate (lower is the aim)" in md and "helped: directional ablation (harmful requests)." in md
    assert "| **helped** | 10.0% vs 90.0% | -80.0 [" in md and "refusal 87.56% -> 0.00%" in md
    assert "harmless requests answered 90.0% vs 90.0%" in md
    md = "\n".join(_refusal(20, 21).verdict_markdown())
    assert "**no detectable effect (n=30)**" in md
    md = "\n".join(_refusal(3, 27, deg=12).verdict_markdown())  # the ablation made it refuse more: hurt
    assert "**hurt**" in md and "40% degenerate texts (unsteered 0%)" in md
    assert "### Verdict" in _refusal(27, 3).table_markdown()  # the section's table carries it


def test_ilrr_verdict_against_greedy_and_against_sampling():
    rows = [
        rate_row(_recs(k, 40, "positive"), "positive", method=m)
        for m, k in (("none", 10), ("ilrr", 34), ("sample_random", 12), ("sample_best_ref", 30))
    ]
    res = ILRRStudyResult("m", {}, [], {"s": 1.0}, rows)
    md = "\n".join(res.verdict_markdown())
    assert "| ILRR (positive reference) | **helped** | 85.0% vs 25.0% |" in md
    assert "| k samples, random pick | **no detectable effect (n=40)** |" in md
    assert "the paper's comparison" in md and "paper (arXiv 2601.21647, sentiment/toxicity)" in md
    assert "| ILRR vs k samples, random pick | **helped** |" in md
    assert "| ILRR vs k samples, closest to reference | **no detectable effect (n=40)** |" in md
    assert "+10 to +60 points over sampling at equal compute" in md and "(sampling 0%)" in md
    assert "helped: ILRR (positive reference) / k samples, closest to reference; no detectable effect (n=40)" in md
    said = res.verdict()
    assert said[0].startswith("ILRR (positive reference) vs no steering: helped, +60.0 points positive")
