"""Moment mismatch: Gaussian OT closes the diagonal W2 gap, the full-cov W2 matches a dense formula."""

import os

import torch

from analyses.moments import gaussian_w2_full, moment_mismatch


def test_w2_full_matches_dense_formula():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(50, 8, generator=g, dtype=torch.float64)
    B = torch.randn(60, 8, generator=g, dtype=torch.float64) @ torch.randn(8, 8, generator=g, dtype=torch.float64) + 1
    Sa, Sb = torch.cov(A.T, correction=0), torch.cov(B.T, correction=0)
    vals, vecs = torch.linalg.eigh(Sa)
    h = (vecs * vals.sqrt()) @ vecs.T
    inner = h @ Sb @ h
    v2, q2 = torch.linalg.eigh(inner)
    cross = v2.clamp_min(0).sqrt().sum()
    ref = ((A.mean(0) - B.mean(0)).pow(2).sum() + Sa.trace() + Sb.trace() - 2 * cross).sqrt()
    assert abs(gaussian_w2_full(A, B) - float(ref)) < 1e-8


def test_gaussian_ot_reduces_w2_and_plot(tmp_path):
    g = torch.Generator().manual_seed(1)
    src = {f"blocks.{l}.mlp.hook_out": torch.randn(200, 6, generator=g, dtype=torch.float64) for l in range(3)}
    tgt = {k: v * 2.5 + 1.0 + 0.1 * torch.randn(200, 6, generator=g, dtype=torch.float64) for k, v in src.items()}
    rep = moment_mismatch(src, tgt, estimators=["mean_act", "gaussian_ot", "linear_act"])
    for s in src:
        r = {x["estimator"]: x for x in rep.records if x["site"] == s}
        assert r["gaussian_ot"]["w2_gauss_diag"] < 1e-8 < r["none"]["w2_gauss_diag"]
        assert r["mean_act"]["mean_gap"] < 1e-8 and r["mean_act"]["w2_gauss_diag"] > 0.5
        assert r["linear_act"]["w2_empirical_1d"] <= r["none"]["w2_empirical_1d"]
    path = rep.plot(str(tmp_path / "m.png"))
    assert os.path.getsize(path) > 5000


def test_held_out_moments_measure_unseen_pairs(tmp_path):
    """Maps fitted on 20 pairs overfit: in-sample the diagonal Gaussian map matches the target's means and
    variances exactly, on held-out pairs from the same distributions it leaves a gap (still far below the
    untouched source's); the held-out rows are measured on the unseen data."""
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(12, 12, generator=g, dtype=torch.float64)
    draw = lambda n: torch.randn(n, 12, generator=g, dtype=torch.float64)  # noqa: E731
    site = "blocks.0.mlp.hook_out"
    src, tgt = {site: draw(20)}, {site: draw(20) @ mix + 1.0}
    src_h, tgt_h = {site: draw(200)}, {site: draw(200) @ mix + 1.0}
    rep = moment_mismatch(src, tgt, estimators=["gaussian_ot"], held_out=(src_h, tgt_h))
    r = {(x["data"], x["estimator"]): x for x in rep.records}
    assert set(r) == {
        ("in-sample", "none"),
        ("in-sample", "gaussian_ot"),
        ("held-out", "none"),
        ("held-out", "gaussian_ot"),
    }
    assert (
        r[("in-sample", "gaussian_ot")]["w2_gauss_diag"] < 1e-8 < 0.3 < r[("held-out", "gaussian_ot")]["w2_gauss_diag"]
    )
    assert r[("held-out", "gaussian_ot")]["w2_gauss_diag"] < r[("held-out", "none")]["w2_gauss_diag"]
    assert r[("held-out", "none")]["n_pairs"] == 200 and r[("in-sample", "none")]["n_pairs"] == 20
    path = rep.plot(str(tmp_path / "m.png"), title="test")
    assert os.path.getsize(path) > 5000
