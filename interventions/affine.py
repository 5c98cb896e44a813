"""AffineMap: T(a) = ω a + β with ω identity / scalar / diagonal / full / c·I + U Vᵀ (low rank)."""

from __future__ import annotations

from typing import Any

import math

import torch
from jaxtyping import Float

KINDS = ("identity", "scalar", "diag", "full", "lowrank")
F64 = torch.float64


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=F64).detach().cpu().clone()


class AffineMap:
    """An affine transport map, stored in float64, applied in the activation's dtype as one fused op.

    `omega` is what the kind stores: None (identity), a 0-d tensor (scalar), `[d]` (diag), `[d, d]` (full,
    applied as `x @ ω.T`), or for 'lowrank' the pair (`scale`, `U`, `V`) with ω = scale·I + U Vᵀ.
    """

    def __init__(
        self,
        d: int,
        kind: str = "identity",
        omega: Any = None,
        beta: Any = None,
        *,
        U: Any = None,
        V: Any = None,
        scale: float = 1.0,
        meta: dict | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown map kind {kind!r}; use one of {KINDS}")
        self.d, self.kind, self.meta = int(d), kind, dict(meta or {})
        self._cast: dict = {}
        self.beta = _t(torch.zeros(d) if beta is None else beta).reshape(d)
        self.omega = None if kind in ("identity", "lowrank") else _t(omega)
        self.U = _t(U) if kind == "lowrank" else None
        self.V = _t(V) if kind == "lowrank" else None
        self.scale = float(scale)
        self._validate()
        self._check_finite()

    @property
    def beta(self) -> torch.Tensor:
        return self._beta

    @beta.setter
    def beta(self, value) -> None:
        beta = _t(value).reshape(self.d)
        if hasattr(self, "_beta"):  # the constructor checks every part at once, afterwards
            _refuse_non_finite(self, "beta", beta)
        self._beta = beta
        self._cast = {}  # cast copies are stale now

    def _validate(self) -> None:
        want = {"scalar": (), "diag": (self.d,), "full": (self.d, self.d)}.get(self.kind)
        if want is not None and tuple(self.omega.shape) != want:
            raise ValueError(f"{self.kind} omega must have shape {want}, got {tuple(self.omega.shape)}")
        if self.kind == "lowrank" and (self.U.shape != self.V.shape or self.U.shape[0] != self.d):
            raise ValueError(
                f"lowrank U and V must both be [d={self.d}, r], got {tuple(self.U.shape)}, {tuple(self.V.shape)}"
            )

    def _check_finite(self) -> None:
        """NaN / inf parameters would turn every steered token into garbage without a word: refuse them."""
        for name in ("omega", "beta", "U", "V"):
            _refuse_non_finite(self, name, getattr(self, name))
        if not math.isfinite(self.scale):
            raise NonFiniteMapError(f"{self!r}: scale={self.scale} is not finite; {_FIX}")

    # ------------------------------------------------------------------ application
    def _params(self, dtype: torch.dtype, device: torch.device) -> tuple:
        key = (dtype, device)
        hit = self._cast.get(key)
        if hit is None:
            conv = lambda x: None if x is None else x.to(device=device, dtype=dtype)  # noqa: E731
            hit = (conv(self.omega), conv(self.beta), conv(self.U), conv(self.V))
            self._cast[key] = hit
        return hit

    def __call__(self, x: Float[torch.Tensor, "... d"], ctx=None) -> Float[torch.Tensor, "... d"]:
        if x.shape[-1] != self.d:
            raise ValueError(f"map of width {self.d} applied to activations of width {x.shape[-1]}")
        omega, beta, U, V = self._params(x.dtype, x.device)
        if self.kind == "identity":
            return x + beta
        if self.kind in ("scalar", "diag"):
            return torch.addcmul(beta, x, omega)
        if self.kind == "full":
            return torch.matmul(x, omega.T) + beta
        return torch.add(torch.matmul(torch.matmul(x, V), U.T) + beta, x, alpha=self.scale)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """ω x without β."""
        return self(x) - self._params(x.dtype, x.device)[1]

    # ------------------------------------------------------------------ algebra
    def dense(self) -> torch.Tensor:
        """ω as a `[d, d]` float64 matrix (for small d, tests and folding)."""
        eye = torch.eye(self.d, dtype=F64)
        if self.kind == "identity":
            return eye
        if self.kind == "scalar":
            return eye * self.omega
        if self.kind == "diag":
            return torch.diag(self.omega)
        if self.kind == "full":
            return self.omega.clone()
        return self.scale * eye + self.U @ self.V.T

    def strength(self, lam: float) -> "AffineMap":
        """T_λ = (1-λ) I + λ T: λ = 0 is the identity, λ = 1 the map."""
        lam = float(lam)
        if not math.isfinite(lam):
            raise ValueError(
                f"strength λ={lam} for {self!r} is not finite; use a finite number (0 = no effect, 1 = the fitted map)"
            )
        meta = {**self.meta, "lambda": lam * self.meta.get("lambda", 1.0)}
        if self.kind == "identity":
            return AffineMap(self.d, "identity", beta=lam * self.beta, meta=meta)
        if self.kind in ("scalar", "diag"):
            return AffineMap(self.d, self.kind, 1 - lam + lam * self.omega, lam * self.beta, meta=meta)
        if self.kind == "full":
            return AffineMap(
                self.d, "full", (1 - lam) * torch.eye(self.d, dtype=F64) + lam * self.omega, lam * self.beta, meta=meta
            )
        return AffineMap(
            self.d,
            "lowrank",
            beta=lam * self.beta,
            U=lam * self.U,
            V=self.V,
            scale=1 - lam + lam * self.scale,
            meta=meta,
        )

    def __matmul__(self, first: "AffineMap") -> "AffineMap":
        """`T2 @ T1` applies T1 first: ω = ω2 ω1, β = ω2 β1 + β2."""
        return first.then(self)

    def then(self, second: "AffineMap") -> "AffineMap":
        if not isinstance(second, AffineMap) or second.d != self.d:
            raise ValueError("compose needs two AffineMaps of the same width")
        try:
            return self._then(second)
        except NonFiniteMapError as e:
            raise NonFiniteMapError(f"composing {self!r} then {second!r} overflows: {e}") from None

    def _then(self, second: "AffineMap") -> "AffineMap":
        a, b = self, second
        beta = b.linear(a.beta) + b.beta
        meta = {"composed_of": [a.meta, b.meta]}
        elementwise = ("identity", "scalar", "diag")
        if a.kind in elementwise and b.kind in elementwise:
            if a.kind != "diag" and b.kind != "diag":
                wa = torch.tensor(1.0, dtype=F64) if a.omega is None else a.omega
                wb = torch.tensor(1.0, dtype=F64) if b.omega is None else b.omega
                return AffineMap(self.d, "scalar", wa * wb, beta, meta=meta)
            return AffineMap(self.d, "diag", torch.diagonal(b.dense()) * torch.diagonal(a.dense()), beta, meta=meta)
        lowish = ("identity", "scalar", "lowrank")
        if a.kind in lowish and b.kind in lowish:
            ca, cb = _scale_of(a), _scale_of(b)
            Ua, Va = _uv(a)
            Ub, Vb = _uv(b)
            U = torch.cat([cb * Ua + Ub @ (Vb.T @ Ua), ca * Ub], dim=1)
            V = torch.cat([Va, Vb], dim=1)
            return AffineMap(self.d, "lowrank", beta=beta, U=U, V=V, scale=ca * cb, meta=meta)
        return AffineMap(self.d, "full", b.dense() @ a.dense(), beta, meta=meta)

    def inverse(self) -> "AffineMap":
        meta = {**self.meta, "inverse": True}
        if self.kind == "identity":
            return AffineMap(self.d, "identity", beta=-self.beta, meta=meta)
        if self.kind in ("scalar", "diag"):
            if bool((self.omega.abs() < 1e-12).any()):
                raise ValueError("this map has zero scales, so it is not invertible")
            inv = 1.0 / self.omega
            return AffineMap(self.d, self.kind, inv, -inv * self.beta, meta=meta)
        if self.kind == "full":
            try:
                inv = torch.linalg.inv(self.omega)
            except RuntimeError as e:
                raise ValueError(f"omega is singular, so this map is not invertible: {e}") from None
            return AffineMap(self.d, "full", inv, -inv @ self.beta, meta=meta)
        c = self.scale
        core = c * torch.eye(self.U.shape[1], dtype=F64) + self.V.T @ self.U
        size = abs(c) + float(self.U.norm() * self.V.norm())
        if abs(c) < 1e-12 or (core.numel() and float(torch.linalg.svdvals(core).min()) < 1e-10 * size):
            raise ValueError(
                "this low-rank map is singular (e.g. a directional ablation projects a direction "
                "away), so it has no inverse"
            )
        U = -(self.U @ torch.linalg.inv(core)) / c  # Woodbury
        out = AffineMap(self.d, "lowrank", U=U, V=self.V, scale=1.0 / c, meta=meta)
        out.beta = -out.linear(self.beta)
        return out

    def __repr__(self) -> str:
        est = self.meta.get("estimator", "")
        return f"AffineMap(d={self.d}, kind={self.kind}{', ' + est if est else ''})"

    # ------------------------------------------------------------------ serialisation
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"beta": self.beta}
        if self.omega is not None:
            out["omega"] = self.omega.reshape(-1) if self.kind == "scalar" else self.omega
        if self.kind == "lowrank":
            out["U"], out["V"] = self.U, self.V
        return out

    def header(self) -> dict:
        return {"type": "affine", "d": self.d, "kind": self.kind, "scale": self.scale, "meta": self.meta}

    @classmethod
    def from_parts(cls, header: dict, tensors: dict[str, torch.Tensor]) -> "AffineMap":
        omega = tensors.get("omega")
        if header["kind"] == "scalar" and omega is not None:
            omega = omega.reshape(())
        return cls(
            header["d"],
            header["kind"],
            omega,
            tensors["beta"],
            U=tensors.get("U"),
            V=tensors.get("V"),
            scale=header.get("scale", 1.0),
            meta=header.get("meta"),
        )


class NonFiniteMapError(ValueError):
    """A map parameter holds NaN or inf."""


_FIX = (
    "refit the map on finite activations (interventions check them), use a finite strength, or re-create the plan file"
)


def _refuse_non_finite(m: AffineMap, name: str, t: torch.Tensor | None) -> None:
    if t is None:
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        where = m.meta.get("site")
        raise NonFiniteMapError(
            f"{m!r}{' at site ' + repr(where) if where else ''}: {name} has {int(bad.sum())} "
            f"non-finite (NaN/inf) value(s) of {t.numel()}; {_FIX}"
        )


def _scale_of(m: AffineMap) -> float:
    return {"identity": 1.0, "scalar": float(m.omega) if m.omega is not None else 1.0}.get(m.kind, m.scale)


def _uv(m: AffineMap) -> tuple[torch.Tensor, torch.Tensor]:
    if m.kind == "lowrank":
        return m.U, m.V
    z = torch.zeros(m.d, 0, dtype=F64)
    return z, z
