"""Where and when an intervention acts: token scope, step / t window, per-neuron support bounds, and
timestep schedules (maps fitted at several t, picked by the step context at run time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from jaxtyping import Float

from mdm_lens.context import check_scope

# quantile presets for support bounds (ml-act's Q0 = [min, max]; Qinf = no bounds)
QUANTILE_PRESETS = {"Q0": (0.0, 1.0), "Q1": (0.01, 0.99), "Q5": (0.05, 0.95), "Q25": (0.25, 0.75)}


def support_bounds(A: Float[torch.Tensor, "n d"], preset: str = "Q0") -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-neuron source quantile interval for `bounds=`; 'Qinf' means unbounded (None)."""
    if preset == "Qinf":
        return None
    if preset not in QUANTILE_PRESETS:
        raise ValueError(f"unknown bounds preset {preset!r}; use one of {[*QUANTILE_PRESETS, 'Qinf']}")
    lo, hi = QUANTILE_PRESETS[preset]
    A = torch.as_tensor(A, dtype=torch.float64)
    return torch.quantile(A, lo, dim=0), torch.quantile(A, hi, dim=0)


@dataclass
class TimestepSchedule:
    """Per-timestep maps: the first (t_lo, t_hi, map) with t_lo <= ctx.t <= t_hi acts; none -> untouched."""

    entries: list[tuple[float, float, Any]]

    def pick(self, t: float | None):
        if t is None:
            return None
        for lo, hi, m in self.entries:
            if lo <= t <= hi:
                return m
        return None

    def __call__(self, act: torch.Tensor, ctx=None) -> torch.Tensor:
        m = self.pick(getattr(ctx, "t", None))
        return act if m is None else m(act, ctx)

    @property
    def d(self) -> int:
        return self.entries[0][2].d

    def strength(self, lam: float) -> "TimestepSchedule":
        return TimestepSchedule([(lo, hi, m.strength(lam)) for lo, hi, m in self.entries])


def fit_schedule(
    src_by_t: dict[float, torch.Tensor], tgt_by_t: dict[float, torch.Tensor], estimator: str, **opts
) -> TimestepSchedule:
    """One map per collected t; each covers the t interval up to the midpoints with its neighbours."""
    from .estimators import fit_map

    ts = sorted(src_by_t)
    if not ts or set(ts) != set(tgt_by_t):
        raise ValueError("source and target must be collected at the same, non-empty set of t values")
    edges = [0.0] + [(a + b) / 2 for a, b in zip(ts, ts[1:])] + [1.0]
    return TimestepSchedule(
        [(edges[i], edges[i + 1], fit_map(estimator, src_by_t[t], tgt_by_t[t], **opts)) for i, t in enumerate(ts)]
    )


@dataclass
class Restricted:
    """An intervention restricted to a token scope, a step window / t range and per-neuron bounds.

    Bounds follow ml-act: only values strictly inside (lo, hi) are transported, others pass untouched.
    Only the generation's own rows (ctx.main_rows) are steered.
    """

    inner: Callable
    scope: str = "all"
    steps: tuple[int, int] | None = None  # [start, stop) in step indices
    t_range: tuple[float, float] | None = None  # inclusive
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None
    _cast: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        check_scope(self.scope)

    @property
    def d(self) -> int:
        return self.inner.d

    def active(self, ctx) -> bool:
        if ctx is None:
            return self.steps is None and self.t_range is None
        if self.steps is not None and (ctx.step is None or not self.steps[0] <= ctx.step < self.steps[1]):
            return False
        if self.t_range is not None and (ctx.t is None or not self.t_range[0] <= ctx.t <= self.t_range[1]):
            return False
        return True

    def __call__(self, act: torch.Tensor, ctx=None) -> torch.Tensor:
        if not self.active(ctx):
            return act
        out = self.inner(act, ctx)
        keep = None
        if self.bounds is not None:
            key = (act.dtype, act.device)
            if key not in self._cast:
                self._cast[key] = tuple(b.to(act.device, act.dtype) for b in self.bounds)
            lo, hi = self._cast[key]
            keep = (act > lo) & (act < hi)
        if ctx is not None and (self.scope != "all" or ctx.main_rows < act.shape[0]):
            sel = ctx.scope_mask(self.scope, act.device).clone() if act.dim() == 3 else None
            if sel is not None:
                sel[ctx.main_rows :] = False
                sel = sel.unsqueeze(-1)
                keep = sel if keep is None else keep & sel
        return out if keep is None else torch.where(keep, out, act)

    def strength(self, lam: float) -> "Restricted":
        return Restricted(self.inner.strength(lam), self.scope, self.steps, self.t_range, self.bounds)


def restrict(
    m, scope: str | None = None, steps: Sequence[int] | None = None, t_range: Sequence[float] | None = None, bounds=None
) -> Restricted:
    """Layer restrictions on `m`, merging with the ones it already has."""
    base = m if isinstance(m, Restricted) else Restricted(m)
    return Restricted(
        base.inner,
        scope or base.scope,
        tuple(steps) if steps is not None else base.steps,
        tuple(t_range) if t_range is not None else base.t_range,
        bounds if bounds is not None else base.bounds,
    )
