"""Margin from ties for token-exact goldens.

A golden of token ids made on one machine holds on another only if no decision the sampler took (an argmax,
a top-k cut, a categorical draw) sits within float32 round-off of flipping. `Jittered` wraps a model so every
forward's logits move by independent uniform noise in [-delta, delta]; a case whose tokens survive that has
margin. delta = 1e-5 is about twice the largest logit difference seen between machines (5.2e-6: AVX-512/AMX
kernels vs others, any thread count) and ~1e-4 of the tiny models' logit scale (std ~0.16).
"""

from __future__ import annotations

import dataclasses

import torch

DELTA = 1e-5


class Jittered:
    """`model` whose logits (a tensor, or `.logits` of a returned dataclass) get seeded uniform noise."""

    def __init__(self, model, seed: int, delta: float = DELTA):
        self._model, self._delta = model, delta
        self._gen = torch.Generator().manual_seed(seed)  # its own stream: the sampler's RNG is untouched

    def _noise(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + (torch.rand(logits.shape, generator=self._gen) * 2 - 1).to(logits.dtype) * self._delta

    def __call__(self, *args, **kwargs):
        out = self._model(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return self._noise(out)
        if dataclasses.is_dataclass(out):
            return dataclasses.replace(out, logits=self._noise(out.logits))
        raise TypeError(f"cannot jitter a {type(out).__name__}")

    def __getattr__(self, name):
        return getattr(self._model, name)
