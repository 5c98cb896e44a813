"""Issue 10, maps and estimators: non-finite parameters never pass silently; near-constant neurons get a
bounded scale through the relative std floor while ordinary neurons keep the exact closed form."""

from __future__ import annotations

import math

import pytest
import torch

from interventions import GaussianOT, LinearACT, TimestepSchedule, restrict
from interventions.affine import AffineMap, NonFiniteMapError
from interventions.estimators import fit_map, quantile_match, std_floor

F64 = torch.float64
NAN, INF = float("nan"), float("inf")


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _vec(d: int, at: int, value: float) -> torch.Tensor:
    v = torch.ones(d, dtype=F64)
    v[at] = value
    return v


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize(
    "kind,part",
    [
        ("identity", "beta"),
        ("scalar", "omega"),
        ("diag", "omega"),
        ("diag", "beta"),
        ("full", "omega"),
        ("lowrank", "U"),
        ("lowrank", "V"),
    ],
)
def test_built_map_refuses_non_finite(kind, part, bad):
    d = 4
    parts = {
        "beta": torch.zeros(d, dtype=F64),
        "omega": {
            "scalar": torch.tensor(2.0, dtype=F64),
            "diag": torch.ones(d, dtype=F64),
            "full": torch.eye(d, dtype=F64),
        }.get(kind),
        "U": torch.ones(d, 1, dtype=F64),
        "V": torch.ones(d, 1, dtype=F64),
    }
    parts[part] = parts[part].clone().reshape(-1).index_fill(0, torch.tensor([0]), bad).reshape(parts[part].shape)
    with pytest.raises(NonFiniteMapError, match=f"{part} has 1 non-finite") as err:
        AffineMap(
            d,
            kind,
            parts["omega"],
            parts["beta"],
            U=parts["U"] if kind == "lowrank" else None,
            V=parts["V"] if kind == "lowrank" else None,
        )
    assert f"kind={kind}" in str(err.value) and "refit" in str(err.value)


def test_lowrank_scale_and_beta_setter_refuse_non_finite():
    with pytest.raises(NonFiniteMapError, match="scale=inf"):
        AffineMap(3, "lowrank", U=torch.ones(3, 1), V=torch.ones(3, 1), scale=INF)
    m = AffineMap(3, "diag", torch.ones(3), torch.zeros(3))
    with pytest.raises(NonFiniteMapError, match="beta has 1 non-finite"):
        m.beta = _vec(3, 1, NAN)
    assert torch.equal(m.beta, torch.zeros(3, dtype=F64))  # unchanged after the refusal
    m.beta = torch.ones(3)
    assert torch.equal(m(torch.zeros(2, 3)), torch.ones(2, 3))


@pytest.mark.parametrize("lam", [NAN, INF, -INF])
def test_strength_refuses_non_finite(lam):
    m = AffineMap(3, "diag", torch.full((3,), 2.0), torch.ones(3))
    sched = TimestepSchedule([(0.0, 1.0, m)])
    for obj in (m, restrict(m, steps=(0, 3)), sched):
        with pytest.raises(ValueError, match="strength .* is not finite"):
            obj.strength(lam)
    assert torch.equal(m.strength(0.5).omega, torch.full((3,), 1.5, dtype=F64))


def test_composition_overflow_is_named():
    big = AffineMap(3, "scalar", torch.tensor(1e200, dtype=F64))
    with pytest.raises(NonFiniteMapError, match="composing .* overflows: .*omega"):
        big.then(big)
    full = AffineMap(3, "full", torch.eye(3, dtype=F64) * 1e200, torch.zeros(3))
    with pytest.raises(NonFiniteMapError, match="composing"):
        full @ full
    ok = big.then(AffineMap(3, "scalar", torch.tensor(1e-200, dtype=F64)))
    assert math.isclose(float(ok.omega), 1.0)


def test_from_parts_refuses_non_finite():
    m = AffineMap(3, "diag", torch.ones(3), torch.zeros(3))
    tensors = {**m.tensors(), "omega": _vec(3, 2, NAN)}
    with pytest.raises(NonFiniteMapError, match="omega"):
        AffineMap.from_parts(m.header(), tensors)


# ------------------------------------------------------------------ estimators: relative std floor
def _near_constant(seed: int = 0, n: int = 400, d: int = 8, j: int = 3):
    g = _g(seed)
    A = torch.randn(n, d, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, d, dtype=F64)
    B = torch.randn(n, d, generator=g, dtype=F64) * 0.4 + 1.0
    A[:, j] = 2.0 + 1e-7 * torch.randn(n, generator=g, dtype=F64)  # float noise on a constant neuron
    return A, B, j


def test_gaussian_ot_near_constant_neuron_bounded_ordinary_unchanged():
    A, B, j = _near_constant()
    old = GaussianOT.fit(A, B, rel_floor=0.0)  # the previous formula
    assert float(old.omega[j]) > 1e6  # what the issue reported
    new = GaussianOT.fit(A, B)
    sa, sb = A.std(0, unbiased=False), B.std(0, unbiased=False)
    floor = max(1e-8, 1e-3 * float(sa.median()))
    assert float(new.omega.abs().max()) <= float(sb.max()) / floor  # bounded
    assert float(new.omega[j]) == 1.0
    torch.testing.assert_close(new.beta[j], B[:, j].mean() - A[:, j].mean())  # mean shift kept
    others = [i for i in range(A.shape[1]) if i != j]
    assert torch.equal(new.omega[others], old.omega[others])
    assert torch.equal(new.beta[others], old.beta[others])
    torch.testing.assert_close(new.omega[others], (sb / sa)[others], rtol=0, atol=0)
    assert new.meta["options"]["rel_floor"] == 1e-3


def test_linear_act_near_constant_neuron_bounded_ordinary_unchanged():
    A, B, j = _near_constant(1)
    A[:, 5] = 2.0 + 1e-5 * torch.randn(A.shape[0], generator=_g(9), dtype=F64)  # above the old eps on Σã²
    old = LinearACT.fit(A, B, rel_floor=0.0)
    assert float(old.omega[5]) > 1e4
    new = LinearACT.fit(A, B)
    assert float(new.omega[5]) == 1.0 and float(new.omega[j]) == 1.0
    others = [i for i in range(A.shape[1]) if i not in (j, 5)]
    assert torch.equal(new.omega[others], old.omega[others]) and torch.equal(new.beta[others], old.beta[others])
    assert float(new.omega.abs().max()) < 10


def test_floor_options_are_checked_and_pass_through_fit_map():
    A, B, j = _near_constant(2)
    with pytest.raises(ValueError, match="rel_floor=-1 must be a finite number >= 0"):
        GaussianOT.fit(A, B, rel_floor=-1)
    with pytest.raises(ValueError, match="rel_floor=nan"):
        LinearACT.fit(A, B, rel_floor=NAN)
    assert float(fit_map("gaussian_ot", A, B, rel_floor=0.0).omega[j]) > 1e6
    sa = torch.tensor([0.0, 1.0, 2.0, 3.0, 9.0], dtype=F64)
    assert std_floor(sa, 1e-8, 0.1) == pytest.approx(0.2) and std_floor(sa * 0, 1e-8, 0.1) == 1e-8


def test_quantile_match_is_public_and_used_by_moments():
    X = torch.arange(10, dtype=F64)[:, None]
    torch.testing.assert_close(quantile_match(X, 4)[:, 0], torch.tensor([0.0, 3.0, 6.0, 9.0], dtype=F64))
    from analyses.moments import empirical_w2_1d

    A = torch.randn(30, 2, generator=_g(3), dtype=F64)
    assert empirical_w2_1d(A, A + 2.0) == pytest.approx(2.0)
