"""Scopes under the KV cache: a cached forward computes only some canvas columns (`ctx.computed`), the others
come from the cache. A scope whose positions all lie outside them (the prompt, under Fast-dLLM's cache) has
nothing to pool in that forward: it is recorded as absent (never as an exact 0) and the messages say the cache
is why, instead of blaming the prompt or failing with torch's size error."""

from __future__ import annotations

import torch

CACHE_FIX = (
    "a KV-cached forward computes only ctx.computed columns (the rest come from the cache); collect this "
    "scope with sampler='reference', or pick a scope inside the computed block ('masked', 'response')"
)


def is_cached_forward(ctx) -> bool:
    info = getattr(ctx, "info", None)
    return info is not None and info.computed is not None


def computes_none_of_scope(ctx, sel: torch.Tensor) -> bool:
    """A cached forward whose computed columns hold none of the scope's positions (one bool read, cached only)."""
    return is_cached_forward(ctx) and not bool(sel.any())


def absent_reason(cache, name: str, step=...) -> str:
    gone = sorted(
        (s for n, s in cache.absent if n == name and (step is ... or s == step)), key=lambda s: -1 if s is None else s
    )
    if not gone:
        return ""
    return f"; scope {cache.scope!r} had no computed position at step(s) {gone[:10]} because {CACHE_FIX}"


def stack_steps(name: str, items: list[tuple[int | None, torch.Tensor]]) -> torch.Tensor:
    shapes = {tuple(v.shape) for _, v in items}
    if len(shapes) > 1:
        by = {s: tuple(v.shape) for s, v in items}
        raise ValueError(
            f"cannot stack {name!r} over steps: the shapes differ ({dict(list(by.items())[:4])} ...) "
            f"because {CACHE_FIX}; cache with reduce='mean', or read cache[{name!r}, step] per step"
        )
    return torch.stack([v for _, v in items])
