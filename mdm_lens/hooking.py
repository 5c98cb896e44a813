"""Registering `fn(act, ctx)` hooks on canonical sites, and always removing them."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Sequence, Union

import torch
from torch import nn

from .context import StepContext
from .families.base import Site

HookFn = Callable[[torch.Tensor, StepContext], Union[torch.Tensor, None]]
HookSpec = Mapping[str, Union[HookFn, Sequence[HookFn]]]


def _check_replacement(site: str, old: torch.Tensor, new: object) -> torch.Tensor:
    if not isinstance(new, torch.Tensor):
        raise TypeError(f"hook on {site!r} returned {type(new).__name__}; return a tensor or None")
    if new.shape != old.shape or new.dtype != old.dtype:
        raise ValueError(
            f"hook on {site!r} returned shape {tuple(new.shape)} dtype {new.dtype}, but the site carries "
            f"shape {tuple(old.shape)} dtype {old.dtype}; return a tensor of the same shape and dtype")
    return new


def _run_fns(site: str, fns: Sequence[HookFn], act: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    out = act
    for fn in fns:
        ctx.site = site             # an earlier fn may have run another site's hook in between
        r = fn(out, ctx)
        if r is not None:
            out = _check_replacement(site, out, r)
    return out


def _output_hook(site: str, fns: Sequence[HookFn], get_ctx: Callable[[], StepContext]):
    single = fns[0] if len(fns) == 1 else None

    def hook(module: nn.Module, args, output):
        is_tuple = type(output) is tuple
        act = output[0] if is_tuple else output
        if single is not None:                      # fast path: one fn, no loop
            ctx = get_ctx()
            ctx.site = site
            new = single(act, ctx)
            if new is None or new is act:
                return None
            new = _check_replacement(site, act, new)
        else:
            new = _run_fns(site, fns, act, get_ctx())
            if new is act:
                return None
        return (new, *output[1:]) if is_tuple else new
    return hook


def _input_hook(site: str, fns: Sequence[HookFn], get_ctx: Callable[[], StepContext]):
    def hook(module: nn.Module, args, kwargs):
        if args:
            act = args[0]
        elif "hidden_states" in kwargs:
            act = kwargs["hidden_states"]
        else:
            raise RuntimeError(f"site {site!r}: module was called without a positional input or hidden_states")
        new = _run_fns(site, fns, act, get_ctx())
        if new is act:
            return None
        if args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}
    return hook


@contextmanager
def attach_hooks(root: nn.Module, spec: HookSpec, get_ctx: Callable[[], StepContext],
                 resolve: Callable[[str], Site]) -> Iterator[None]:
    """Validate every name first (nothing is attached on a bad name), then attach; detach in `finally`.

    Before each call the context's `site` is set to the canonical name, so one fn can serve many sites."""
    plan: list[tuple[Site, list[HookFn]]] = []
    for name, fns in spec.items():
        site = resolve(name)
        fns = [fns] if callable(fns) else list(fns)
        for fn in fns:
            if not callable(fn):
                raise TypeError(f"hook for {name!r} is {type(fn).__name__}, not a callable fn(act, ctx)")
        plan.append((site, fns))
    handles = []
    try:
        for site, fns in plan:
            module = root.get_submodule(site.module_path)
            if site.kind == "output":
                handles.append(module.register_forward_hook(_output_hook(site.name, fns, get_ctx)))
            else:
                handles.append(module.register_forward_pre_hook(
                    _input_hook(site.name, fns, get_ctx), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
