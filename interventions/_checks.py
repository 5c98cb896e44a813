"""Input checks shared by every estimator: clear errors, float64 copies."""

from __future__ import annotations

import inspect

import torch


def as_samples(A, B, site: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    where = f" at site {site!r}" if site else ""
    A = torch.as_tensor(A).detach().to("cpu", torch.float64)
    B = torch.as_tensor(B).detach().to("cpu", torch.float64)
    for name, X in (("source", A), ("target", B)):
        if X.dim() != 2:
            raise ValueError(f"{name} activations{where} must be [n, d], got shape {tuple(X.shape)}")
        if X.shape[0] < 2:
            raise ValueError(f"{name} activations{where} have n={X.shape[0]} samples; need at least 2")
        bad = int((~torch.isfinite(X)).sum())
        if bad:
            raise ValueError(f"{name} activations{where} contain {bad} NaN/inf values; check the collection")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"source width {A.shape[1]} != target width {B.shape[1]}{where}")
    return A, B


def check_options(fn, opts: dict, name: str) -> None:
    valid = [p for p in inspect.signature(fn).parameters if p not in ("cls", "A", "B", "site")]
    bad = sorted(set(opts) - set(valid))
    if bad:
        raise TypeError(f"unknown option(s) {bad} for estimator {name!r}; valid options: {valid}")
