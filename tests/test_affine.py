"""Affine maps and estimators against closed forms and direct solves."""

import pytest
import torch

from interventions import (
    AffineMap,
    ActAdd,
    BuresOT,
    DirectionalAblation,
    GaussianOT,
    LinearACT,
    MeanACT,
    ProjectionClamp,
    fit_map,
)
from interventions.bures import dense_bures, shrinkage_intensity

F64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gaussian_ot_1d_closed_form():
    A = torch.randn(4000, 3, generator=_g(), dtype=F64) * torch.tensor([1.0, 2.0, 0.5], dtype=F64) + 1.0
    B = torch.randn(4000, 3, generator=_g(1), dtype=F64) * torch.tensor([3.0, 0.5, 0.5], dtype=F64) - 2.0
    m = GaussianOT.fit(A, B)
    torch.testing.assert_close(m.omega, B.std(0, unbiased=False) / A.std(0, unbiased=False))
    T = m(A)
    torch.testing.assert_close(T.mean(0), B.mean(0), atol=1e-10, rtol=0)
    torch.testing.assert_close(T.std(0), B.std(0), atol=1e-10, rtol=0)


def test_linear_act_equals_sorted_least_squares():
    A = torch.randn(64, 5, generator=_g(2), dtype=F64).exp()
    B = torch.randn(64, 5, generator=_g(3), dtype=F64) * 2
    m = LinearACT.fit(A, B)
    for j in range(5):
        a, b = torch.sort(A[:, j]).values, torch.sort(B[:, j]).values
        X = torch.stack([a, torch.ones_like(a)], 1)
        w, c = torch.linalg.lstsq(X, b[:, None]).solution[:, 0]
        assert abs(m.omega[j] - w) < 1e-10 and abs(m.beta[j] - c) < 1e-10


def test_linear_act_unequal_sizes_and_constant_neurons():
    A = torch.randn(40, 3, generator=_g(4), dtype=F64)
    A[:, 1] = 3.0
    B = torch.randn(60, 3, generator=_g(5), dtype=F64)
    m = LinearACT.fit(A, B)
    assert m.omega[1] == 1.0 and torch.isfinite(m.beta).all()
    with pytest.raises(ValueError, match="equal sizes"):
        LinearACT.fit(A, B, unequal="error")


def test_mean_shift_rules():
    A = torch.randn(50, 4, generator=_g(6), dtype=F64)
    B = A + torch.tensor([1.0, 0, 0, 0], dtype=F64)
    torch.testing.assert_close(MeanACT.fit(A, B)(A), B)
    aa = ActAdd.fit(A, B, alpha=2.0)
    torch.testing.assert_close(aa.beta, torch.tensor([2.0, 0, 0, 0], dtype=F64))
    da = DirectionalAblation.fit(A, B)
    out = da(A)
    assert out[:, 0].abs().max() < 1e-12 and torch.allclose(out[:, 1:], A[:, 1:])
    pc = ProjectionClamp.fit(A, B, value=5.0)
    assert torch.allclose(pc(A)[:, 0], torch.full((50,), 5.0, dtype=F64))


@pytest.mark.parametrize("shrinkage", ["ledoit_wolf", "oas", 0.3])
def test_bures_lowrank_equals_dense_solve(shrinkage):
    d, n = 96, 40
    A = torch.randn(n, d, generator=_g(7), dtype=F64) @ torch.randn(d, d, generator=_g(8), dtype=F64) * 0.2
    B = torch.randn(n, d, generator=_g(9), dtype=F64) * 1.5 + 0.5
    m = BuresOT.fit(A, B, shrinkage=shrinkage)
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    Sa, Sb, eye = Ac.T @ Ac / n, Bc.T @ Bc / n, torch.eye(d, dtype=F64)
    if isinstance(shrinkage, str):
        ra, rb = shrinkage_intensity(Ac, shrinkage), shrinkage_intensity(Bc, shrinkage)
        Sa, Sb = (1 - ra) * Sa + ra * Sa.trace() / d * eye, (1 - rb) * Sb + rb * Sb.trace() / d * eye
    else:
        Sa, Sb = Sa + shrinkage * eye, Sb + shrinkage * eye
    D = dense_bures(Sa, Sb)
    torch.testing.assert_close(m.dense(), D, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(D @ Sa @ D, Sb, atol=1e-9, rtol=1e-9)  # A Σa A = Σb


def test_bures_full_covariance_closed_form_moments():
    d = 4
    L = torch.tensor([[1.0, 0, 0, 0], [0.5, 1.0, 0, 0], [0.2, -0.3, 0.7, 0], [0, 0.4, 0.1, 1.2]], dtype=F64)
    A = torch.randn(20000, d, generator=_g(10), dtype=F64)
    B = torch.randn(20000, d, generator=_g(11), dtype=F64) @ L.T + 3
    m = BuresOT.fit(A, B, shrinkage=1e-9)
    T = m(A)
    torch.testing.assert_close(T.mean(0), B.mean(0), atol=1e-8, rtol=0)
    torch.testing.assert_close(torch.cov(T.T, correction=0), torch.cov(B.T, correction=0), atol=1e-6, rtol=0)
    sym = m.dense()
    torch.testing.assert_close(sym, sym.T, atol=1e-9, rtol=0)  # a Monge map is symmetric PSD


def test_shrinkage_matches_sklearn():
    skc = pytest.importorskip("sklearn.covariance")
    X = torch.randn(30, 50, generator=_g(12), dtype=F64)
    Xc = X - X.mean(0)
    assert abs(shrinkage_intensity(Xc, "ledoit_wolf") - skc.ledoit_wolf_shrinkage(X.numpy())) < 1e-10
    assert abs(shrinkage_intensity(Xc, "oas") - skc.oas(X.numpy())[1]) < 1e-10


def test_strength_compose_inverse():
    A = torch.randn(30, 6, generator=_g(13), dtype=F64)
    B = torch.randn(30, 6, generator=_g(14), dtype=F64) * 2 + 1
    x = torch.randn(5, 6, generator=_g(15), dtype=F64)
    maps = [
        LinearACT.fit(A, B),
        BuresOT.fit(A, B, shrinkage=0.1),
        MeanACT.fit(A, B),
        DirectionalAblation.fit(A, B),
        AffineMap(6, "full", torch.randn(6, 6, generator=_g(16), dtype=F64), torch.ones(6, dtype=F64)),
        AffineMap(6, "scalar", torch.tensor(2.0, dtype=F64)),
    ]
    for m in maps:
        torch.testing.assert_close(m.strength(0.0)(x), x)
        torch.testing.assert_close(m.strength(1.0)(x), m(x))
        torch.testing.assert_close(m.strength(0.3)(x), 0.7 * x + 0.3 * m(x))
        for m2 in maps:
            torch.testing.assert_close((m2 @ m)(x), m2(m(x)), atol=1e-9, rtol=1e-9)
    for m in maps:
        if m.kind == "lowrank" and m.meta.get("estimator") == "directional_ablation":
            with pytest.raises(ValueError, match="no inverse"):
                m.inverse()
        else:
            torch.testing.assert_close(m.inverse()(m(x)), x, atol=1e-8, rtol=1e-8)


def test_apply_in_activation_dtype():
    m = LinearACT.fit(torch.randn(10, 4, dtype=F64), torch.randn(10, 4, dtype=F64))
    x = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    assert m(x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="width 4 applied to activations of width 5"):
        m(torch.randn(2, 5))


def test_bad_input_errors():
    A = torch.randn(10, 4, dtype=F64)
    with pytest.raises(ValueError, match="at least 2"):
        fit_map("linear_act", A[:1], A)
    bad = A.clone()
    bad[0, 0], bad[1, 1] = float("nan"), float("inf")
    with pytest.raises(ValueError, match="blocks.3.mlp.hook_out.*2 NaN/inf values"):
        fit_map("mean_act", bad, A, site="blocks.3.mlp.hook_out")
    with pytest.raises(TypeError, match="unknown option.*'beta'.*valid options"):
        fit_map("linear_act", A, A + 1, beta=3)
    with pytest.raises(ValueError, match="unknown estimator"):
        fit_map("magic", A, A)
    with pytest.raises(ValueError, match="width"):
        fit_map("mean_act", A, torch.randn(10, 5, dtype=F64))
