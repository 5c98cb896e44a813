"""`copy.deepcopy(model)` gives a clean model: the weights, sites, tokenizer and config, none of the live state.

Why: the thread guard's message recommends a copy per thread, and a copy taken while another thread generates
or inside `with model.hooks(...)` used to carry that moment with it: the sampler's step (a plain forward on the
copy was then recorded under that step) and the `with` block's hooks (whose context lives on the original, so
the copy's `generate` failed with "hook called outside HookedMDM.forward"). A copy starts with no step, no
hooks attached, no augmenters and its own thread guard.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from .hooking import LIVE, ThreadGuard
from .sampling.common import StepClock

_LIVE_STATE = ("_ctx", "_guard", "step_clock", "_n_hooks", "_augmenters")
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks")


def strip_live_hooks(root: nn.Module) -> None:
    """Remove the hooks `attach_hooks` put on `root`'s modules (permanent hooks of other code stay)."""
    for module in root.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if not hooks:
                continue
            for key in [k for k, fn in hooks.items() if getattr(fn, LIVE, False)]:
                del hooks[key]
                for extra in (
                    "_forward_hooks_with_kwargs",
                    "_forward_hooks_always_called",
                    "_forward_pre_hooks_with_kwargs",
                ):
                    getattr(module, extra, {}).pop(key, None)


def clean_deepcopy(model: Any, memo: dict) -> Any:
    cls = type(model)
    new = cls.__new__(cls)
    memo[id(model)] = new
    for key, value in model.__dict__.items():
        if key not in _LIVE_STATE:
            new.__dict__[key] = copy.deepcopy(value, memo)
    new.__dict__.update(_ctx=None, _guard=ThreadGuard(), step_clock=StepClock(), _n_hooks=0, _augmenters=[])
    strip_live_hooks(new.model)
    return new
