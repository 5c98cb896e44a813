"""Activation caches: one forward (`ActivationCache`) or a whole denoising run (`StepCache`)."""
from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Union

import torch
from jaxtyping import Float

from .context import StepContext, check_scope
from .safefile import open_safetensors, reading, save_safetensors_atomic

StepFilter = Union[None, Iterable[int], Callable[[StepContext], bool]]
Reducer = Union[None, str, Callable[[torch.Tensor, StepContext], torch.Tensor]]


class ActivationCache(dict):
    """Site name -> activation of one forward pass (a dict, with a friendlier KeyError)."""

    def __missing__(self, key):
        raise KeyError(f"{key!r} was not cached; cached sites: {sorted(self)[:8]}...")


def masked_mean(act: Float[torch.Tensor, "batch pos d"], mask: torch.Tensor) -> Float[torch.Tensor, "batch d"]:
    """Mean over the positions a boolean `[batch, pos]` mask selects, in float32 (0 where none)."""
    m = mask.to(device=act.device, dtype=torch.float32).unsqueeze(-1)
    return (act.float() * m).sum(1) / m.sum(1).clamp_min(1.0)


class StepCache:
    """Activations indexed by `(site, step)`, filled by hooks during generation.

    `reduce="mean"` pools inside the hook over the `scope` positions, so memory is `[batch, d]` per
    (site, step) however long the sequence; `reduce=None` keeps `[batch, pos, d]`. Plain forwards are
    recorded under step None. Only the generation's own rows (`ctx.main_rows`) are kept.
    """

    def __init__(self, names: Iterable[str], steps: StepFilter = None, reduce: Reducer = None,
                 scope: str = "all", device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
        self.names = list(names)
        if not self.names:
            raise ValueError("StepCache needs at least one site name")
        check_scope(scope)
        if isinstance(reduce, str) and reduce != "mean":
            raise ValueError(f"unknown reduce {reduce!r}; use None, 'mean' or a callable(act, ctx)")
        self._steps = steps if (steps is None or callable(steps)) else set(int(s) for s in steps)
        self.reduce, self.scope, self.device, self.dtype = reduce, scope, torch.device(device), dtype
        self.store: dict[tuple[str, int | None], torch.Tensor] = {}
        self.t: dict[int | None, float | None] = {}

    def _wanted(self, ctx: StepContext) -> bool:
        if self._steps is None:
            return True
        if callable(self._steps):
            return bool(self._steps(ctx))
        return ctx.step in self._steps

    def record(self, act: torch.Tensor, ctx: StepContext) -> None:
        """The hook fn, one for every site: stores `act` (reduced) under `(ctx.site, ctx.step)`."""
        if not self._wanted(ctx):
            return None
        rows = act[: ctx.main_rows]
        if self.reduce == "mean":
            val = masked_mean(rows, ctx.scope_mask(self.scope, act.device)[: ctx.main_rows])
        elif callable(self.reduce):
            val = self.reduce(rows, ctx)
        else:
            val = rows.detach()
        self.store[(ctx.site, ctx.step)] = val.detach().to(self.device, self.dtype or val.dtype)
        self.t[ctx.step] = ctx.t
        return None

    def hook_fns(self) -> dict[str, Callable]:
        return {name: self.record for name in self.names}

    @property
    def steps(self) -> list:
        return sorted({s for _, s in self.store}, key=lambda s: -1 if s is None else s)

    def __getitem__(self, key: tuple[str, int | None]) -> torch.Tensor:
        if key not in self.store:
            raise KeyError(f"nothing cached for {key!r}; sites {self.names}, steps {self.steps[:10]}...")
        return self.store[key]

    def __contains__(self, key) -> bool:
        return key in self.store

    def __len__(self) -> int:
        return len(self.store)

    def stack(self, name: str) -> torch.Tensor:
        """`[n_steps, ...]` in step order, for one site."""
        steps = [s for s in self.steps if (name, s) in self.store]
        if not steps:
            raise KeyError(f"nothing cached for site {name!r}")
        return torch.stack([self.store[(name, s)] for s in steps])

    def save(self, path: str | os.PathLike) -> None:
        """safetensors + JSON metadata, written atomically."""
        tensors, index = {}, []
        for i, ((name, step), val) in enumerate(self.store.items()):
            tensors[f"t{i}"] = val.contiguous()
            index.append([name, step])
        meta = {"format": "mdm-lens-stepcache", "index": json.dumps(index),
                "t": json.dumps({str(k): v for k, v in self.t.items()}),
                "names": json.dumps(self.names), "scope": self.scope, "reduce": str(self.reduce)}
        save_safetensors_atomic(tensors, path, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StepCache":
        with open_safetensors(path, "an mdm-lens step cache") as f, reading(path, "an mdm-lens step cache"):
            meta = f.metadata() or {}
            if meta.get("format") != "mdm-lens-stepcache":
                raise ValueError(f"{path} is not an mdm-lens step cache (no 'mdm-lens-stepcache' metadata)")
            cache = cls(json.loads(meta["names"]), scope=meta.get("scope", "all"))
            for i, (name, step) in enumerate(json.loads(meta["index"])):
                cache.store[(name, step)] = f.get_tensor(f"t{i}")
            cache.t = {(None if k == "None" else int(k)): v for k, v in json.loads(meta["t"]).items()}
        return cache
