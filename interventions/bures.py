"""Full-covariance Gaussian (Bures / Monge) OT map, exact in the span of the samples.

With n ≪ d the shrunk covariances Σ = (1-ρ)S + ρμI (Ledoit-Wolf / OAS) or S + λI (ridge) are scalar on
W⊥, the complement of the joint span W of both centred sample sets. The Monge map then splits into the
k × k problem on W (k ≤ n_a + n_b) and the scalar sqrt(σ²_b/σ²_a) on W⊥: ω = c·I + W (T_W − c I) Wᵀ.
Nothing d × d is formed, so d = 4096 takes a fraction of a second.
"""

from __future__ import annotations

import torch
from jaxtyping import Float

F64 = torch.float64
RHO_FLOOR = 1e-6


def _sym_sqrt(M: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((M + M.T) / 2)
    vals = vals.clamp_min(1e-300)
    p = vals.rsqrt() if inverse else vals.sqrt()
    return (vecs * p) @ vecs.T


def _gram_stats(X: torch.Tensor) -> tuple[float, float, float]:
    """mu = tr(S)/d, ||S||_F² and Σ_ij (X²X²ᵀ)_ij for S = XᵀX/n, all through n × n Grams."""
    n, d = X.shape
    G = X @ X.T
    mu = float(torch.diagonal(G).sum()) / (n * d)
    fro2 = float((G * G).sum()) / n**2
    beta_raw = float(((X * X).sum(1) ** 2).sum())  # Σ_ij (X²ᵀX²)_ij = Σ_k ‖x_k‖⁴
    return mu, fro2, beta_raw


def shrinkage_intensity(X: Float[torch.Tensor, "n d"], method: str) -> float:
    """Ledoit-Wolf or OAS intensity ρ for centred X (sklearn's formulas, via Grams)."""
    n, d = X.shape
    mu, fro2, beta_raw = _gram_stats(X)
    if method == "ledoit_wolf":
        delta = (fro2 - 2 * mu * mu * d + d * mu * mu) / d  # ||S - μI||² / d
        beta = (beta_raw / n - fro2) / (d * n)
        beta = min(beta, delta)
        return 0.0 if beta <= 0 else beta / delta
    if method == "oas":
        alpha = fro2 / d**2
        num = alpha + mu**2
        den = (n + 1) * (alpha - mu**2 / d)
        return 1.0 if den == 0 else min(num / den, 1.0)
    raise ValueError(f"unknown shrinkage {method!r}; use 'ledoit_wolf', 'oas', a ridge float or None")


def bures_fit(A: torch.Tensor, B: torch.Tensor, shrinkage) -> tuple[float, torch.Tensor, torch.Tensor, dict]:
    """Returns (c, U, V, info) with ω = c I + U Vᵀ, the Monge map between the shrunk Gaussians."""
    d = A.shape[1]
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    Z = torch.cat([Ac, Bc])
    _, s, Vh = torch.linalg.svd(Z, full_matrices=False)
    k = int((s > s.max() * 1e-10).sum()) if s.numel() else 0
    W = Vh[:k].T  # [d, k] orthonormal basis of the joint span
    Sa = (Ac @ W).T @ (Ac @ W) / A.shape[0]
    Sb = (Bc @ W).T @ (Bc @ W) / B.shape[0]
    eye = torch.eye(k, dtype=F64)
    if shrinkage is None or isinstance(shrinkage, (int, float)):
        lam = 1e-8 * max(float(torch.diagonal(Sa).mean()), 1e-30) if shrinkage is None else float(shrinkage)
        if lam <= 0:
            raise ValueError("ridge shrinkage must be > 0 (an n ≪ d covariance is singular without it)")
        Sa_w, Sb_w, va, vb = Sa + lam * eye, Sb + lam * eye, lam, lam
        info = {"ridge": lam}
    else:
        # ρ is floored so the off-span scale stays defined (it is then sqrt(μ_b / μ_a))
        ra = max(shrinkage_intensity(Ac, shrinkage), RHO_FLOOR)
        rb = max(shrinkage_intensity(Bc, shrinkage), RHO_FLOOR)
        mua = max(float(torch.diagonal(Sa).sum()) / d, 1e-300)
        mub = max(float(torch.diagonal(Sb).sum()) / d, 1e-300)
        va, vb = ra * mua, rb * mub
        Sa_w, Sb_w = (1 - ra) * Sa + va * eye, (1 - rb) * Sb + vb * eye
        info = {"rho_a": ra, "rho_b": rb, "mu_a": mua, "mu_b": mub}
    c = (vb / va) ** 0.5
    ra_half, ra_inv_half = _sym_sqrt(Sa_w), _sym_sqrt(Sa_w, inverse=True)
    T_w = ra_inv_half @ _sym_sqrt(ra_half @ Sb_w @ ra_half) @ ra_inv_half
    return c, W @ (T_w - c * eye), W, info


def dense_bures(Sa: torch.Tensor, Sb: torch.Tensor) -> torch.Tensor:
    """Reference d × d solve (eigh-based square roots), for tests and the `bench fit` comparison."""
    h, ih = _sym_sqrt(Sa), _sym_sqrt(Sa, inverse=True)
    return ih @ _sym_sqrt(h @ Sb @ h) @ ih
