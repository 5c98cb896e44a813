"""`HookedMDM.generate(sampler="fast")`: the family's Fast-dLLM sampler (KV cache, optional confidence threshold).

The switch lives in one place: `SAMPLERS` names the choices, `FAST_DEFAULTS` are the options the fast path adds
to the family's recommended settings (merged by `HookedMDM.sampler_settings`, like every other option), and
`fast_call` turns the merged settings into the cached sampler's call. Settings of the reference sampler that the
fast one does not implement are dropped when they are at their no-op value and refused otherwise, naming them.
What steering means under the cache: docs/fast_sampling.md.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .sampling.common import check_kwargs

AUGMENT_CACHED = (
    "an intervention that adds batch rows (model.augment_batch, e.g. reference alignment) cannot run under a "
    "KV-cached sampler: its extra rows would enter the cache, and its hooks need the whole sequence while a "
    "cached forward computes only a block. Generate with sampler='reference' (the default) for it")

SAMPLERS = ("reference", "fast")
FAST_DEFAULTS = {"cache": "dual", "threshold": None}
DREAM_FAST_DEFAULTS = {"block_length": 32}
# reference-only settings, with the value at which they change nothing (dropped then, refused otherwise)
_NO_OP = {"llada": {"cfg_scale": 0.0, "logits_eos_inf": False, "confidence_eos_eot_inf": False},
          "dream": {"alg": None}}


def check_sampler_name(sampler: Any) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is not a sampler; use one of {SAMPLERS} ('reference': the family's "
                         "reference sampler, the default; 'fast': Fast-dLLM's KV-cached sampler)")
    return sampler


def fast_defaults(family_sampler: str) -> dict[str, Any]:
    """The options the fast path adds under the family's recommended settings."""
    if family_sampler not in _NO_OP:
        raise ValueError(f"sampler='fast' runs Fast-dLLM's KV-cached samplers, which exist for LLaDA and Dream only; "
                         f"this model's family samples with {family_sampler!r}: use sampler='reference'")
    return {**FAST_DEFAULTS, **(DREAM_FAST_DEFAULTS if family_sampler == "dream" else {})}


def fast_call(model, input_ids: torch.Tensor, attn: torch.Tensor | None, kwargs: dict[str, Any]
              ) -> tuple[Callable, dict[str, Any]]:
    """-> (cached sampler, its keyword arguments) for `fn(model, input_ids, **kw)`; refuses what it cannot run."""
    from .sampling import dream_generate_cached, llada_generate_cached
    if model._augmenters:
        raise ValueError(AUGMENT_CACHED)
    family = model.spec.sampler
    kwargs = dict(kwargs)
    for key, no_op in _NO_OP[family].items():
        if key not in kwargs:
            continue
        value = kwargs.pop(key)
        if family == "dream" and key == "alg":
            if value == "confidence_threshold" and kwargs.get("threshold") is None:
                raise ValueError("alg='confidence_threshold' needs threshold=... on the fast sampler (pass "
                                 "threshold=0.9, say)")
            continue            # Fast-dLLM's Dream block sampler decodes by entropy, or by threshold
        if value != no_op:
            raise ValueError(f"{key}={value!r} is a setting of the reference sampler that sampler='fast' does not "
                             f"implement (Fast-dLLM has none); use sampler='reference', or set {key}={no_op!r}")
    if family == "llada":
        fn = llada_generate_cached
        kwargs.setdefault("mask_id", model.mask_id)
        if attn is not None:
            kwargs["attention_mask"] = attn
    else:
        fn = dream_generate_cached
        kwargs.setdefault("mask_token_id", model.mask_id)
        if attn is not None and bool((attn == 0).any()):
            raise ValueError("sampler='fast' on Dream takes no left-padded batch (Fast-dLLM's Dream cache ignores "
                             "padding): generate prompts of one length together, or use sampler='reference'")
    check_kwargs(fn, kwargs, {"model", "prompt", "input_ids", "on_step", "trace", "stats"})
    return fn, kwargs
