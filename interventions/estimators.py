"""The steering rules of Lek et al. (Table 1) and Stolfo et al. as affine-map estimators, fit in float64.

Each `fit(A, B)` takes source activations A `[n_a, d]` (e.g. prompts without the instruction) and target
activations B `[n_b, d]` (with it) and returns an AffineMap T with T(A) ≈ B in the estimator's sense.
"""

from __future__ import annotations

import torch

from ._checks import as_samples, check_options
from .affine import F64, AffineMap
from .bures import bures_fit


def _delta(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return B.mean(0) - A.mean(0)


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    if n < 1e-12:
        raise ValueError("source and target means coincide: there is no contrastive direction to use")
    return v / n


def _meta(name: str, A, B, **opts) -> dict:
    return {"estimator": name, "options": opts, "n_a": int(A.shape[0]), "n_b": int(B.shape[0])}


class DirectionalAblation:
    """ω = I − v̂v̂ᵀ, β = 0 with v̂ ∝ m_b − m_a (Shnaidman et al.): removes the contrastive direction."""

    @classmethod
    def fit(cls, A, B, site: str | None = None) -> AffineMap:
        A, B = as_samples(A, B, site)
        v = _unit(_delta(A, B))[:, None]
        return AffineMap(A.shape[1], "lowrank", U=-v, V=v, meta=_meta("directional_ablation", A, B))


class MeanACT:
    """ω = I, β = Δm = m_b − m_a (Rodriguez et al.)."""

    @classmethod
    def fit(cls, A, B, site: str | None = None) -> AffineMap:
        A, B = as_samples(A, B, site)
        return AffineMap(A.shape[1], "identity", beta=_delta(A, B), meta=_meta("mean_act", A, B))


class ActAdd:
    """ω = I, β = α Δm/‖Δm‖ (Turner et al.; Stolfo et al.). α defaults to ‖Δm‖, i.e. Mean-ACT's shift;
    pass `alpha` to set the step length along the unit direction."""

    @classmethod
    def fit(cls, A, B, site: str | None = None, alpha: float | None = None) -> AffineMap:
        A, B = as_samples(A, B, site)
        dm = _delta(A, B)
        a = float(dm.norm()) if alpha is None else float(alpha)
        return AffineMap(A.shape[1], "identity", beta=a * _unit(dm), meta=_meta("actadd", A, B, alpha=a))


def std_floor(sa: torch.Tensor, eps: float, rel_floor: float) -> float:
    """The source spread below which a neuron counts as constant: max(eps, rel_floor · median σ_a).

    WHY relative: an absolute floor alone lets a near-constant neuron (σ_a = 1e-7 from float noise) through,
    and σ_b / σ_a then explodes (ω = 3.7e6 was seen), turning the map into noise amplification. Relative to
    the site's typical spread, such neurons get ω = 1 (the mean shift only) and every ordinary neuron keeps
    the exact ratio."""
    for name, v in (("eps", eps), ("rel_floor", rel_floor)):
        if not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float("inf")):
            raise ValueError(f"{name}={v!r} must be a finite number >= 0")
    return max(float(eps), float(rel_floor) * float(sa.median()))


class GaussianOT:
    """Per neuron ω = σ_b/σ_a, β = m_b − ω m_a. Neurons whose source spread σ_a is at most
    `std_floor` = max(eps, rel_floor · median σ_a) are near-constant: they get ω = 1 (plus the mean shift),
    so ω stays bounded by max σ_b / floor instead of exploding."""

    @classmethod
    def fit(cls, A, B, site: str | None = None, eps: float = 1e-8, rel_floor: float = 1e-3) -> AffineMap:
        A, B = as_samples(A, B, site)
        sa, sb = A.std(0, unbiased=False), B.std(0, unbiased=False)
        floor = std_floor(sa, eps, rel_floor)
        w = torch.where(sa > floor, sb / sa.clamp_min(floor), torch.ones_like(sa))
        return AffineMap(
            A.shape[1],
            "diag",
            w,
            B.mean(0) - w * A.mean(0),
            meta=_meta("gaussian_ot", A, B, eps=eps, rel_floor=rel_floor),
        )


def quantile_match(X: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted columns of X resampled at n evenly spaced quantile positions (linear interpolation)."""
    Xs = torch.sort(X, dim=0).values
    if X.shape[0] == n:
        return Xs
    pos = torch.linspace(0, X.shape[0] - 1, n, dtype=F64)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(X.shape[0] - 1)
    frac = (pos - lo)[:, None]
    return Xs[lo] * (1 - frac) + Xs[hi] * frac


class LinearACT:
    """Per neuron least squares between sorted, centred samples (apple/ml-act's Linear-ACT):
    ω = Σ ã₍ᵢ₎ b̃₍ᵢ₎ / Σ ã₍ᵢ₎², β = m_b − ω m_a. (The OT paper prints Σ b̃² in the denominator: a typo.)
    With n_a ≠ n_b the larger side is quantile-matched to the smaller one (`unequal="quantile"`).
    Near-constant source neurons (spread at most `std_floor`, see GaussianOT) get ω = 1 (plus the mean shift)."""

    @classmethod
    def fit(
        cls, A, B, site: str | None = None, unequal: str = "quantile", eps: float = 1e-8, rel_floor: float = 1e-3
    ) -> AffineMap:
        A, B = as_samples(A, B, site)
        if unequal not in ("quantile", "error"):
            raise ValueError(f"unequal must be 'quantile' or 'error', got {unequal!r}")
        if A.shape[0] != B.shape[0] and unequal == "error":
            raise ValueError(
                f"Linear-ACT pairs sorted samples: source has {A.shape[0]}, target {B.shape[0]}; "
                "give equal sizes or unequal='quantile'"
            )
        n = min(A.shape[0], B.shape[0])
        As, Bs = quantile_match(A, n), quantile_match(B, n)
        ma, mb = As.mean(0), Bs.mean(0)
        at, bt = As - ma, Bs - mb
        den = (at * at).sum(0)
        sd = (den / n).sqrt()
        keep = (den > eps) & (sd > std_floor(sd, 0.0, rel_floor))  # eps: on Σ ã², as before
        w = torch.where(keep, (at * bt).sum(0) / den.clamp_min(eps), torch.ones_like(den))
        return AffineMap(
            A.shape[1],
            "diag",
            w,
            mb - w * ma,
            meta=_meta("linear_act", A, B, unequal=unequal, eps=eps, rel_floor=rel_floor),
        )


class BuresOT:
    """Full-covariance Gaussian Monge map A = Σa^{-1/2}(Σa^{1/2} Σb Σa^{1/2})^{1/2} Σa^{-1/2} with shrinkage,
    solved exactly in the joint sample span (see bures.py): a c·I + U Vᵀ map, never d × d."""

    @classmethod
    def fit(cls, A, B, site: str | None = None, shrinkage: str | float | None = "ledoit_wolf") -> AffineMap:
        A, B = as_samples(A, B, site)
        scale, U, V, mu = bures_fit(A, B, shrinkage)
        m = AffineMap(A.shape[1], "lowrank", U=U, V=V, scale=scale, meta=_meta("bures_ot", A, B, shrinkage=shrinkage))
        m.beta = B.mean(0) - m.linear(A.mean(0))
        m.meta["shrunk_scales"] = mu
        return m


class ProjectionClamp:
    """Stolfo et al.: set the component along v̂ ∝ Δm to a fixed value c (default: the target mean's)."""

    @classmethod
    def fit(cls, A, B, site: str | None = None, value: float | None = None) -> AffineMap:
        A, B = as_samples(A, B, site)
        v = _unit(_delta(A, B))
        c = float(B.mean(0) @ v) if value is None else float(value)
        return AffineMap(
            A.shape[1],
            "lowrank",
            beta=c * v,
            U=-v[:, None],
            V=v[:, None],
            meta=_meta("projection_clamp", A, B, value=c),
        )


ESTIMATORS = {
    "directional_ablation": DirectionalAblation,
    "actadd": ActAdd,
    "mean_act": MeanACT,
    "gaussian_ot": GaussianOT,
    "linear_act": LinearACT,
    "bures_ot": BuresOT,
    "projection_clamp": ProjectionClamp,
}


def fit_map(name: str, A, B, site: str | None = None, **opts) -> AffineMap:
    """Fit estimator `name` (a key of ESTIMATORS) with its options; unknown options are refused."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {sorted(ESTIMATORS)}")
    est = ESTIMATORS[name]
    check_options(est.fit, opts, name)
    return est.fit(A, B, site=site, **opts)
