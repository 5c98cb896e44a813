"""The LLaDA2 family's sampling side: recommended settings, `FamilySpec.generate` and the fast (KV-cached) path.

Settings are the hub `generate`'s (inclusionAI/LLaDA2.0-mini README and `modeling_llada2_moe.py`): block
length 32, 32 steps per block, threshold 0.95, greedy, `minimal_topk` 1, EOS ends the run after its block.
The reference's default `gen_length` is 2048; the wrapper's is 128 like the other families' (pass
`gen_length=` for longer answers).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import FastSupport

RECOMMENDED: dict[str, Any] = {
    "gen_length": 128,
    "block_length": 32,
    "steps": 32,
    "threshold": 0.95,
    "temperature": 0.0,
    "top_k": None,
    "top_p": None,
    "minimal_topk": 1,
    "eos_early_stop": False,
}
_FIXED = {"model", "prompt", "attention_mask", "on_step", "trace", "return_history", "stats"}


def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    settings: dict[str, Any],
    *,
    on_step,
    trace,
    special: dict[str, int | None],
    return_history: bool = False,
) -> torch.Tensor:
    """`mdm_lens.sampling.llada2_generate` on the wrapper, EOS from the tokenizer (or config), mask id the model's."""
    from ..sampling.common import check_kwargs
    from ..sampling.llada2 import llada2_generate

    check_kwargs(llada2_generate, settings, _FIXED)
    settings = {"mask_id": model.mask_id, **settings}
    if special["eos"] is not None:
        settings.setdefault("eos_id", special["eos"])
    return llada2_generate(model, input_ids, attention_mask=attention_mask, on_step=on_step, trace=trace, **settings)


def _fast_sampler():
    from ..sampling.llada2_cached import llada2_generate_cached

    return llada2_generate_cached


def _fast_prepare(settings: dict[str, Any], attention_mask: torch.Tensor | None) -> None:
    """The fast path's generic `cache` option names the one cache block diffusion has (the finished blocks')."""
    cache = settings.pop("cache", "prefix")
    if cache not in ("prefix", "dual"):
        raise ValueError(f"cache={cache!r}: LLaDA2's cached sampler caches the finished blocks; use cache='prefix'")
    if attention_mask is not None:
        settings["attention_mask"] = attention_mask


# `cache` is the fast path's generic option; "dual" (Fast-dLLM's default) reads as the prefix cache here: with
# causal attention across blocks nothing after the block is attended, so there is no suffix to cache.
FAST = FastSupport(_fast_sampler, "mask_id", defaults={"cache": "prefix", "threshold": 0.95}, prepare=_fast_prepare)
