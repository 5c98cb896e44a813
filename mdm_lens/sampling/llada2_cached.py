"""LLaDA2's block-diffusion sampler with a KV cache of the finished blocks.

Attention is causal across blocks, so once a block is decoded the keys and values of its columns never change:
later blocks only read them. `llada2_generate_cached` keeps them (`families.kv_cache`, prefix form) and computes
only what changed. The first forward of a block computes the block just finished (its final tokens; the whole
prompt's blocks at the first one) together with the new block, and appends the finished columns' keys/values to
the cache; every further step of the block computes the block's columns alone. So it makes exactly the
reference's forwards (same count, same ids, same block-causal mask rows, same positions), and each logit is
the same sum over the same keys, computed over fewer query rows: equal up to float round-off, which is why
the tests assert token equality with `llada2_generate` on cases with tie margin.

Hooks see the computed columns only: `ctx.computed` says which, `ctx.cached` the prefix read from the cache
(what hooks did to those columns at the forward that computed them stays in their keys/values). Columns after
the block are neither computed nor cached: block diffusion never attends to them.
"""

from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Float, Int

from .common import StepInfo, announcing, check_prompt, resolve_mask_id
from .llada2 import (
    MASK_ID,
    Decoding,
    denoise_blocks,
    model_dtype,
    padded_inputs,
    prepare,
    resolve_eos_id,
    start_canvas,
)
from .trace import DecodeTrace, trace_for


class CachedWindow:
    """The forwards of `denoise_blocks` over a cache of the finished blocks' keys/values."""

    def __init__(self, model: Callable, mask: torch.Tensor, pos: torch.Tensor):
        self.model, self.mask, self.pos = model, mask, pos
        self.past: list | None = None
        self.cached = 0  # columns [0, cached) are in `past`
        self.stats = {"forwards": 0, "columns": 0}

    def computed(self, start: int, stop: int) -> tuple[int, int]:
        """The columns the next forward for block [start, stop) computes: from the cache's end to the block's."""
        return self.cached, stop

    def logits(self, x: Int[torch.Tensor, "b total"], start: int, stop: int) -> Float[torch.Tensor, "b n v"]:
        first = self.cached
        out = self.model(
            x[:, first:stop],
            attention_mask=self.mask[:, :, first:stop, :stop],
            position_ids=self.pos[:, first:stop],
            past_key_values=self.past,
            use_cache=True,
        )
        self.stats["forwards"] += 1
        self.stats["columns"] += x.shape[0] * (stop - first)
        if first < start:  # the finished columns' keys/values are final: keep them, drop the block's own
            self.past = [(k[:, :, :start], v[:, :, :start]) for k, v in out.past_key_values]
            self.cached = start
        return out.logits[:, start - first :]


@torch.no_grad()
def llada2_generate_cached(
    model: Callable,
    prompt: Int[torch.Tensor, "b p"],
    attention_mask: torch.Tensor | None = None,
    temperature: float = 0.0,
    block_length: int = 32,
    steps: int = 32,
    gen_length: int = 2048,
    top_p: float | None = None,
    top_k: int | None = None,
    eos_early_stop: bool = False,
    minimal_topk: int = 1,
    threshold: float = 0.95,
    eos_id: int | None = None,
    mask_id: int | None = None,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    trace: DecodeTrace | None = None,
    return_history: bool = False,
    stats: dict | None = None,
):
    """`llada2_generate` with the finished blocks' keys/values cached (same options, same return). The model is
    called as `model(ids, attention_mask=, position_ids=, past_key_values=, use_cache=True)` and must return
    a `families.kv_cache.CachedOutput`, as the native LLaDA2 model (and `HookedMDM` on it) does. `stats`
    receives `forwards` and `columns` (query columns computed: what the cache saves)."""
    plan = prepare(model, prompt, block_length, steps, gen_length, minimal_topk, threshold, top_k, top_p)
    mask_id = resolve_mask_id(model, mask_id, MASK_ID)
    check_prompt(prompt, mask_id)
    x = start_canvas(prompt, plan, mask_id)
    mask, pos = padded_inputs(plan, attention_mask, x.shape[0], x.device, model_dtype(model))
    window = CachedWindow(model, mask, pos)
    opts = Decoding(temperature, top_k, top_p, threshold, resolve_eos_id(model, eos_id), eos_early_stop, mask_id)
    trace = trace_for(trace, mask_id, return_history)
    if trace is not None:
        trace.start(x[:, : plan.prompt_length + gen_length])
    with announcing(model, on_step) as announce:
        denoise_blocks(window, x, plan, opts, announce, trace, "llada2_cached")
    if stats is not None:
        stats.update(window.stats)
    seqs = x[:, : plan.prompt_length + gen_length]
    if return_history:
        assert trace is not None  # trace_for made one
        return seqs, trace.history
    return seqs
