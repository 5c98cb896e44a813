"""Registering `fn(act, ctx)` hooks on canonical sites, and always removing them.

The four hook modules, each one job: `sites` is the table of names (a role placed at a layer);
`hook_points` the identity modules that give a tensor a place to be hooked; `hooking` (here) attaches user
functions to sites and guarantees their removal; `hooked` is the `HookedMDM` wrapper that ties them to a
model, its step clock and its samplers."""

from __future__ import annotations

import threading
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
    if new.shape != old.shape or new.dtype != old.dtype or new.device != old.device:
        raise ValueError(
            f"hook on {site!r} returned shape {tuple(new.shape)} dtype {new.dtype} on {new.device}, but the site "
            f"carries shape {tuple(old.shape)} dtype {old.dtype} on {old.device}; return a tensor of the same shape "
            f"and dtype on the same device (e.g. new.to(act.device, act.dtype))"
        )
    return new


def _run_fns(site: str, fns: Sequence[HookFn], act: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    out = act
    for fn in fns:
        ctx.site = site  # an earlier fn may have run another site's hook in between
        r = fn(out, ctx)
        if r is not None:
            out = _check_replacement(site, out, r)
    return out


def _output_hook(site: str, fns: Sequence[HookFn], get_ctx: Callable[[], StepContext]):
    single = fns[0] if len(fns) == 1 else None

    def hook(module: nn.Module, args, output):
        is_tuple = type(output) is tuple
        act = output[0] if is_tuple else output
        if single is not None:  # fast path: one fn, no loop
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


LIVE = "_mdm_lens_live_hook"


def _live(hook: Callable) -> Callable:
    """Marks a hook attached for the span of a `with` block, so a copy of the model can drop it (model_copy)."""
    setattr(hook, LIVE, True)
    return hook


@contextmanager
def attach_hooks(
    root: nn.Module, spec: HookSpec, get_ctx: Callable[[], StepContext], resolve: Callable[[str], Site]
) -> Iterator[None]:
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
                handles.append(module.register_forward_hook(_live(_output_hook(site.name, fns, get_ctx))))
            else:
                handles.append(
                    module.register_forward_pre_hook(_live(_input_hook(site.name, fns, get_ctx)), with_kwargs=True)
                )
        yield
    finally:
        for h in handles:
            h.remove()


class ThreadGuard:
    """One thread at a time per model for generations and hooks: hooks live on shared modules and the step
    clock is one value, so another thread's forward would run them with a mixed-up step. A generation or
    attached hooks own the model (re-entrant: a nested generate inside a hook is fine); plain forwards with
    nothing attached may overlap across threads. Anything else gets a clear error, never a silent mix."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread holding the model exclusively
        self._depth = 0
        self._what = ""
        self._who = ""
        self._shared: dict[int, int] = {}  # thread -> plain forwards in flight (no owner)

    def __deepcopy__(self, memo) -> "ThreadGuard":
        return ThreadGuard()  # a copied model is free

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def _busy(self, what: str, who: str, doing: str) -> RuntimeError:
        return RuntimeError(
            f"{what} refused: this model is in use by thread {who!r} ({doing}); hooks and the step "
            "clock are shared, so one generation or hooked forward at a time per model. Wait for "
            "it to finish, or give each thread its own model (copy.deepcopy(model))"
        )

    @contextmanager
    def held(self, what: str, doing: str | None = None) -> Iterator[None]:
        """This thread owns the model for the block (`what`: the request, named when refused; `doing`: how the
        owner is described to a refused thread)."""
        me = threading.get_ident()
        with self._lock:
            if self._owner is not None and self._owner != me:
                raise self._busy(what, self._who, self._what)
            others = [t for t, n in self._shared.items() if t != me and n]
            if self._owner is None and others:
                names = {t.ident: t.name for t in threading.enumerate()}
                raise self._busy(what, names.get(others[0], str(others[0])), "running a forward")
            if self._owner is None:
                self._owner, self._what, self._who = me, doing or what, threading.current_thread().name
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._owner, self._what, self._who = None, "", ""

    @contextmanager
    def forward(self) -> Iterator[None]:
        """A forward: inside the owner's block it just runs; with no owner it runs shared (other threads'
        plain forwards may overlap, while hooks or a generation wait for it); under another owner, refused."""
        me = threading.get_ident()
        with self._lock:
            if self._owner is not None and self._owner != me:
                raise self._busy("a forward", self._who, self._what)
            shared = self._owner is None
            if shared:
                self._shared[me] = self._shared.get(me, 0) + 1
        try:
            yield
        finally:
            if shared:
                with self._lock:
                    self._shared[me] -= 1
                    if not self._shared[me]:
                        del self._shared[me]
