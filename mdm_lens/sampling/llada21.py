"""LLaDA2.1's block-diffusion sampler with token editing (the hub model's own `generate`) as a plain function.

Reference: `generate` in dllm's `dllm/pipelines/llada21/models/modeling_llada21_moe.py` (the code of
inclusionAI/LLaDA2.1-mini). Same block layout, block-causal mask, sampling and threshold rule as LLaDA2.0
(`mdm_lens.sampling.llada2`); what 2.1 changes, all as in the reference:

* no step schedule: each forward takes the masked columns above `threshold` if there are at least
  `num_to_transfer`, else the `num_to_transfer` most confident (`steps` and `minimal_topk` have no effect there);
* **editing**: in the same forward, every already-decoded response column of the block whose newly sampled token
  differs from the current one and has probability above `editing_threshold` is rewritten;
* once the block has no mask, forwards go on while they still edit, at most `max_post_steps` more;
* with `eos_early_stop`, the run stops after a block when the response has no mask and holds an EOS (there is no
  stop without it).

Extensions as in `llada2_generate`: a batch (rows decode independently; a finished row is frozen), left padding,
float32 as well as bfloat16, the returned canvas (`reference_answer` cuts it to the reference's return).
"""

from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Bool, Int

from .common import StepInfo, announcing, check_prompt, resolve_mask_id
from .llada2 import (
    MASK_ID,
    BlockPlan,
    FullWindow,
    model_dtype,
    padded_inputs,
    prepare,
    resolve_eos_id,
    sample_tokens,
    select_columns,
    start_canvas,
)
from .llada2_cached import CachedWindow
from .trace import DecodeTrace, trace_for


def _edits(
    active: Bool[torch.Tensor, "b n"],
    editable: Bool[torch.Tensor, "b n"],
    tokens: torch.Tensor,
    probs: torch.Tensor,
    old: torch.Tensor,
    editing_threshold: float,
) -> Bool[torch.Tensor, "b n"]:
    """Decoded, non-prompt columns whose new token differs and clears `editing_threshold`."""
    conf = torch.where(editable & ~active, probs, -torch.inf)
    return (conf > editing_threshold) & editable & ~active & (tokens != old)


def denoise_blocks_editing(window, x, plan: BlockPlan, opts: dict, announce, trace, sampler: str) -> None:
    """The reference's 2.1 block loop over canvas `x` (in place); `window` runs the forwards."""
    b, plen, mask_id = x.shape[0], plan.prompt_length, opts["mask_id"]
    bl, n_gen = plan.block_length, plan.num_blocks - plan.first_block
    per_block = -(-bl // opts["num_to_transfer"]) + opts["max_post_steps"] + 1  # an upper bound, for num_steps
    out, step = x[:, : plen + plan.gen_length], 0
    live = torch.ones(b, dtype=torch.bool, device=x.device)
    for blk in range(plan.first_block, plan.num_blocks):
        start, stop = plan.span(blk)
        editable = (torch.arange(start, stop, device=x.device) >= plen)[None].expand(b, bl)
        going = live.clone()  # rows still iterating in this block
        post = torch.zeros(b, dtype=torch.long, device=x.device)
        i = 0
        while True:
            old = x[:, start:stop].clone()
            active = old == mask_id
            post += (~active.any(-1) & going).long()
            going &= post <= opts["max_post_steps"]
            if not bool(going.any()):
                break
            announce(
                StepInfo(
                    step, per_block * n_gen, blk - plan.first_block, n_gen, plen, plan.gen_length, sampler,
                    computed=window.computed(start, stop), block_span=(start, stop), block_step=i,
                    block_num_steps=per_block,
                )
            )  # fmt: skip
            tokens, probs = sample_tokens(
                window.logits(x, start, stop), opts["temperature"], opts["top_k"], opts["top_p"]
            )
            take = select_columns(active & going[:, None], probs, opts["num_to_transfer"], opts["threshold"])
            edit = _edits(active, editable & going[:, None], tokens, probs, old, opts["editing_threshold"])
            x[:, start:stop][take | edit] = tokens[take | edit]
            if trace is not None:
                trace.record(step, out)
            step, i = step + 1, i + 1
            going &= active.any(-1) | edit.any(-1)
        if opts["eos_early_stop"]:
            resp = x[:, plen:stop]
            live &= ~(~(resp == mask_id).any(-1) & (resp == opts["eos_id"]).any(-1))
            if not bool(live.any()):
                return


@torch.no_grad()
def llada21_generate(
    model: Callable,
    prompt: Int[torch.Tensor, "b p"],
    attention_mask: torch.Tensor | None = None,
    temperature: float = 0.0,
    block_length: int = 32,
    gen_length: int = 2048,
    top_p: float | None = None,
    top_k: int | None = None,
    eos_early_stop: bool = False,
    threshold: float = 0.95,
    editing_threshold: float = 0.9,
    max_post_steps: int = 16,
    num_to_transfer: int = 1,
    eos_id: int | None = None,
    mask_id: int | None = None,
    *,
    kv_cache: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    trace: DecodeTrace | None = None,
    return_history: bool = False,
    stats: dict | None = None,
):
    """LLaDA2.1 block diffusion with editing; returns prompt + `gen_length` columns (and the canvas after every
    forward when `return_history`). `stats` receives `forwards` and `columns`. `kv_cache=True` caches the finished
    blocks' keys/values as `llada2_generate_cached` does (editing touches only the current block, so they are
    final too)."""
    for name, v, lo in (("num_to_transfer", num_to_transfer, 1), ("max_post_steps", max_post_steps, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    if not isinstance(editing_threshold, (int, float)) or not 0.0 <= editing_threshold <= 1.0:
        raise ValueError(f"editing_threshold={editing_threshold!r} must be a number in [0, 1] (1 never edits)")
    plan = prepare(model, prompt, block_length, 1, gen_length, 1, threshold, top_k, top_p)
    mask_id = resolve_mask_id(model, mask_id, MASK_ID)
    check_prompt(prompt, mask_id)
    x = start_canvas(prompt, plan, mask_id)
    inputs = padded_inputs(plan, attention_mask, x.shape[0], x.device, model_dtype(model))
    window = CachedWindow(model, *inputs) if kv_cache else FullWindow(model, *inputs)
    opts = {
        "temperature": temperature, "top_k": top_k, "top_p": top_p, "threshold": threshold,
        "editing_threshold": editing_threshold, "max_post_steps": max_post_steps, "num_to_transfer": num_to_transfer,
        "eos_early_stop": eos_early_stop, "eos_id": resolve_eos_id(model, eos_id), "mask_id": mask_id,
    }  # fmt: skip
    trace = trace_for(trace, mask_id, return_history)
    if trace is not None:
        trace.start(x[:, : plan.prompt_length + gen_length])
    with announcing(model, on_step) as announce:
        denoise_blocks_editing(window, x, plan, opts, announce, trace, "llada21_cached" if kv_cache else "llada21")
    if stats is not None:
        stats.update(window.stats)
    seqs = x[:, : plan.prompt_length + gen_length]
    if return_history:
        assert trace is not None  # trace_for made one
        return seqs, trace.history
    return seqs
