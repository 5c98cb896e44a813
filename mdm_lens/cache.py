"""Activation caches: one forward (`ActivationCache`) or a whole denoising run (`StepCache`).

This module holds `StepCache` (per denoising step, reducers, step filters, safetensors files) and the
`run_with_cache` machinery; the one-forward `ActivationCache` with TransformerLens' lookups and residual
tools lives in `mdm_lens.activation_cache` (re-exported here), because it is a TL-parity surface of its own."""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Union

import torch
from jaxtyping import Float

from .activation_cache import ActivationCache, owned
from .context import StepContext, check_scope
from .scope_cache import absent_reason, computes_none_of_scope, stack_steps
from .safefile import damaged_file, open_safetensors, reading, save_safetensors_atomic

StepFilter = Union[None, Iterable[int], Callable[[StepContext], bool]]
Reducer = Union[None, str, Callable[[torch.Tensor, StepContext], torch.Tensor]]


def masked_mean(act: Float[torch.Tensor, "batch pos d"], mask: torch.Tensor) -> Float[torch.Tensor, "batch d"]:
    """Mean over the positions a boolean `[batch, pos]` mask selects, in float32 (0 where none)."""
    m = mask.to(device=act.device, dtype=torch.float32).unsqueeze(-1)
    return (act.float() * m).sum(1) / m.sum(1).clamp_min(1.0)


class StepCache:
    """Activations indexed by `(site, step)`, filled by hooks during generation.

    `reduce="mean"` pools inside the hook over the `scope` positions, so memory is `[batch, d]` per
    (site, step) however long the sequence; `reduce=None` keeps `[batch, pos, d]`. Plain forwards are
    recorded under step None. Only the generation's own rows (`ctx.main_rows`) are kept, only the `steps`
    chosen, on `device`. `at(step)` is that step's `ActivationCache` (TransformerLens' methods work on it when
    the residual and norm-scale sites were cached unreduced); keys may be aliases or `(name, layer)` tuples.
    """

    def __init__(
        self,
        names: Iterable[str],
        steps: StepFilter = None,
        reduce: Reducer = None,
        scope: str = "all",
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        model=None,
    ):
        self.model = model  # for aliases, sizes and weights in `at(step)`; None after `load`
        self.names = list(dict.fromkeys(model.site(n).name for n in names) if model is not None else names)
        if not self.names:
            raise ValueError("StepCache needs at least one site name")
        check_scope(scope)
        if isinstance(reduce, str) and reduce != "mean":
            raise ValueError(f"unknown reduce {reduce!r}; use None, 'mean' or a callable(act, ctx)")
        self._steps = steps if (steps is None or callable(steps)) else set(int(s) for s in steps)
        self.reduce, self.scope, self.device, self.dtype = reduce, scope, torch.device(device), dtype
        self.store: dict[tuple[str, int | None], torch.Tensor] = {}
        self.t: dict[int | None, float | None] = {}
        self.absent: set[tuple[str, int | None]] = set()  # cached forwards that computed none of the scope

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
            sel = ctx.scope_mask(self.scope, act.device)[: ctx.main_rows]
            if computes_none_of_scope(ctx, sel):  # absent, not an exact 0 (mdm_lens.scope_cache)
                self.absent.add((ctx.site, ctx.step))
                return None
            val = masked_mean(rows, sel)
        elif callable(self.reduce):
            val = self.reduce(rows, ctx)
        else:
            val = owned(rows, ctx)
        self.store[(ctx.site, ctx.step)] = val.detach().to(self.device, self.dtype or val.dtype)
        self.t[ctx.step] = ctx.t
        return None

    def hook_fns(self) -> dict[str, Callable]:
        return {name: self.record for name in self.names}

    @property
    def steps(self) -> list:
        return sorted({s for _, s in self.store}, key=lambda s: -1 if s is None else s)

    def _key(self, key) -> tuple[str, int | None]:
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)):
            raise KeyError(
                f"StepCache keys are (site, step) pairs, e.g. cache['blocks.0.hook_resid_post', 3]; "
                f"got {key!r} (for TransformerLens-style keys use cache.at(step)[...])"
            )
        name, step = key
        if self.model is not None and (name, step) not in self.store:
            try:
                name = self.model.site(name).name
            except KeyError:
                pass
        return name, step

    def __getitem__(self, key: tuple[str, int | None]) -> torch.Tensor:
        k = self._key(key)
        if k not in self.store:
            raise KeyError(
                f"nothing cached for {key!r}; sites {self.names}, steps {self.steps[:10]}..."
                + absent_reason(self, k[0], k[1])
            )
        return self.store[k]

    def __contains__(self, key) -> bool:
        try:
            return self._key(key) in self.store
        except KeyError:
            return False

    def at(self, step: int | None, model=None) -> ActivationCache:
        """The activations of one step (None: a plain forward) as an `ActivationCache`; `model` (default: the
        one that filled the cache) gives it sizes, aliases and weights for the TransformerLens methods."""
        data = {name: t for (name, s), t in self.store.items() if s == step}
        if not data:
            raise KeyError(f"nothing cached at step {step!r}; cached steps: {self.steps[:20]}")
        return ActivationCache(data, model=model if model is not None else self.model)

    def __len__(self) -> int:
        return len(self.store)

    def stack(self, name: str) -> torch.Tensor:
        """`[n_steps, ...]` in step order, for one site (an alias names its site)."""
        if self.model is not None and name not in self.names:
            name = self._key((name, None))[0]
        steps = [s for s in self.steps if (name, s) in self.store]
        if not steps:
            raise KeyError(f"nothing cached for site {name!r}" + absent_reason(self, name))
        return stack_steps(name, [(s, self.store[(name, s)]) for s in steps])

    def save(self, path: str | os.PathLike) -> None:
        """safetensors + JSON metadata, written atomically."""
        tensors, index = {}, []
        for i, ((name, step), val) in enumerate(self.store.items()):
            tensors[f"t{i}"] = val.contiguous()
            index.append([name, step])
        meta = {
            "format": "mdm-lens-stepcache",
            "index": json.dumps(index),
            "t": json.dumps({str(k): v for k, v in self.t.items()}),
            "names": json.dumps(self.names),
            "scope": self.scope,
            "reduce": str(self.reduce),
        }
        save_safetensors_atomic(tensors, path, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StepCache":
        with open_safetensors(path, "an mdm-lens step cache") as f, reading(path, "an mdm-lens step cache"):
            meta = f.metadata() or {}
            if meta.get("format") != "mdm-lens-stepcache":
                raise ValueError(f"{path} is not an mdm-lens step cache (no 'mdm-lens-stepcache' metadata)")
            cache = cls(json.loads(meta["names"]), scope=meta.get("scope", "all"))
            index = json.loads(meta["index"])
            if len(index) != len(list(f.keys())):  # a trimmed index would drop tensors silently
                raise damaged_file(
                    path,
                    "an mdm-lens step cache",
                    f"its index lists {len(index)} tensors but the file holds {len(list(f.keys()))}",
                )
            for i, (name, step) in enumerate(index):
                cache.store[(name, step)] = f.get_tensor(f"t{i}")
            cache.t = {(None if k == "None" else int(k)): v for k, v in json.loads(meta["t"]).items()}
        return cache
