"""`HookedMDM.generate(sampler="fast")`: the family's Fast-dLLM sampler (KV cache, optional confidence threshold).

The switch lives in one place: `SAMPLERS` names the choices, `FAST_DEFAULTS` (and the family's
`FamilySpec.fast.defaults`) are the options the fast path adds to the family's recommended settings (merged by `HookedMDM.sampler_settings`, like every other option), and
`fast_call` turns the merged settings into the cached sampler's call. Settings of the reference sampler that the
fast one does not implement are dropped when they are at their no-op value and refused otherwise, naming them.
What steering means under the cache: docs/fast_sampling.md.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .families.base import FamilySpec, FastSupport
from .sampling.common import check_kwargs

AUGMENT_CACHED = (
    "an intervention that adds batch rows (model.augment_batch, e.g. reference alignment) cannot run under a "
    "KV-cached sampler: its extra rows would enter the cache, and its hooks need the whole sequence while a "
    "cached forward computes only a block. Generate with sampler='reference' (the default) for it"
)

SAMPLERS = ("reference", "fast")
FAST_DEFAULTS = {"cache": "dual", "threshold": None}


def check_sampler_name(sampler: Any) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(
            f"sampler={sampler!r} is not a sampler; use one of {SAMPLERS} ('reference': the family's "
            "reference sampler, the default; 'fast': Fast-dLLM's KV-cached sampler)"
        )
    return sampler


def fast_support(spec: FamilySpec) -> FastSupport:
    """The family's fast path (`FamilySpec.fast`); refuses a family without one."""
    if spec.fast is None:
        raise ValueError(
            f"sampler='fast' runs Fast-dLLM's KV-cached samplers, which the {spec.name} family does not "
            f"declare (FamilySpec.fast); use sampler='reference'"
        )
    return spec.fast


def fast_defaults(spec: FamilySpec) -> dict[str, Any]:
    """The options the fast path adds under the family's recommended settings."""
    return {**FAST_DEFAULTS, **fast_support(spec).defaults}


def fast_call(
    model: Any, input_ids: torch.Tensor, attn: torch.Tensor | None, kwargs: dict[str, Any]
) -> tuple[Callable, dict[str, Any]]:
    """-> (cached sampler, its keyword arguments) for `fn(model, input_ids, **kw)`; refuses what it cannot run.
    `model` is a `HookedMDM` (not imported here: the wrapper imports this module)."""
    if model._augmenters:
        raise ValueError(AUGMENT_CACHED)
    fast = fast_support(model.spec)
    kwargs = dict(kwargs)
    if fast.prepare is not None:
        fast.prepare(kwargs, attn)
    for key, no_op in fast.no_op.items():
        value = kwargs.pop(key, no_op)
        if value != no_op:
            raise ValueError(
                f"{key}={value!r} is a setting of the reference sampler that sampler='fast' does not "
                f"implement (Fast-dLLM has none); use sampler='reference', or set {key}={no_op!r}"
            )
    fn = fast.sampler()
    kwargs.setdefault(fast.mask_kwarg, model.mask_id)
    check_kwargs(fn, kwargs, {"model", "prompt", "input_ids", "on_step", "trace", "stats"})
    return fn, kwargs
