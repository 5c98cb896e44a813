"""LLaDA's reference sampler (ML-GSAI/LLaDA `generate.py`) as a plain function over a forward callable.

Same parameters, semantics and random-number use as the reference, so equal seeds give equal tokens.
Two deliberate differences that never change tokens: `eos_id` / `eot_id` are parameters (the reference
hard-codes LLaDA's 126081 / 126348), and `cfg_scale > 0` without an attention mask works (the reference
raises a NameError there).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int

from .common import StepInfo, announcing, check_prompt, logits_of, resolve_mask_id
from .replay import Replay
from .trace import DecodeTrace, trace_for

REMASKING = ("low_confidence", "random")


def add_gumbel_noise(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """exp(logits) / (-log u)^T in float64 (low-precision Gumbel-max hurts MDM samples)."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    u = torch.rand_like(logits, dtype=torch.float64)
    return logits.exp() / (-torch.log(u)) ** temperature


def get_num_transfer_tokens(mask_index: Bool[torch.Tensor, "b n"], steps: int) -> Int[torch.Tensor, "b steps"]:
    """Spread each row's masked count evenly over `steps`, the remainder going to the first steps."""
    count = mask_index.sum(dim=1, keepdim=True)
    base, rem = count // steps, count % steps
    extra = (torch.arange(steps, device=mask_index.device)[None, :] < rem).to(torch.int64)
    return base.to(torch.int64) + extra


def validate_llada_args(steps: int, gen_length: int, block_length: int, remasking: str) -> int:
    """Checks the reference asserts, with errors that name valid values. Returns the number of blocks."""
    if gen_length <= 0 or block_length <= 0 or steps <= 0:
        raise ValueError(
            f"steps, gen_length and block_length must be positive (got {steps}, {gen_length}, {block_length})"
        )
    if gen_length % block_length:
        divisors = [d for d in range(1, gen_length + 1) if gen_length % d == 0]
        raise ValueError(
            f"gen_length={gen_length} is not divisible by block_length={block_length}; valid block lengths: {divisors}"
        )
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        lo = max(num_blocks, steps - steps % num_blocks)
        raise ValueError(
            f"steps={steps} is not divisible by the {num_blocks} blocks "
            f"(gen_length {gen_length} / block_length {block_length}); use a multiple of "
            f"{num_blocks} such as {lo} or {lo + num_blocks}"
        )
    if remasking not in REMASKING:
        raise ValueError(f"unknown remasking {remasking!r}; use one of {REMASKING}")
    return num_blocks


@torch.no_grad()
def llada_generate(
    model: Callable,
    prompt: Int[torch.Tensor, "b p"],
    attention_mask: torch.Tensor | None = None,
    steps: int = 128,
    gen_length: int = 128,
    block_length: int = 128,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int | None = None,
    logits_eos_inf: bool = False,
    confidence_eos_eot_inf: bool = False,
    *,
    eos_id: int = 126081,
    eot_id: int = 126348,
    on_step: Callable[[StepInfo], None] | None = None,
    trace: DecodeTrace | None = None,
    return_history: bool = False,
    replay: Replay | None = None,
):
    """Semi-autoregressive low-confidence (or random) remasking; returns prompt + response ids (and the canvas
    after every step when `return_history`, as Dream's sampler does). `trace` records which step unmasked each
    position (`mdm_lens.sampling.trace`); neither changes the tokens."""
    num_blocks = validate_llada_args(steps, gen_length, block_length, remasking)
    mask_id = resolve_mask_id(model, mask_id, 126336)
    check_prompt(prompt, mask_id)
    b, plen = prompt.shape
    device = prompt.device
    x = torch.full((b, plen + gen_length), mask_id, dtype=torch.long, device=device)
    x[:, :plen] = prompt
    if attention_mask is not None:
        attention_mask = torch.cat(
            [attention_mask.to(device), torch.ones((b, gen_length), dtype=attention_mask.dtype, device=device)], dim=-1
        )
    prompt_index = x != mask_id
    trace = trace_for(trace, mask_id, return_history)
    if trace is not None:
        trace.start(x)
    per_block = steps // num_blocks
    with announcing(model, on_step) as announce:
        for blk in range(num_blocks):
            start, stop = plen + blk * block_length, plen + (blk + 1) * block_length
            num_transfer = get_num_transfer_tokens(x[:, start:stop] == mask_id, per_block)
            for i in range(per_block):
                announce(StepInfo(blk * per_block + i, steps, blk, num_blocks, plen, gen_length, "llada"))
                mask_index = x == mask_id
                if cfg_scale > 0.0:
                    un_x = x.clone()
                    un_x[prompt_index] = mask_id
                    am = None if attention_mask is None else torch.cat([attention_mask, attention_mask], dim=0)
                    both = logits_of(model(torch.cat([x, un_x], dim=0), attention_mask=am))
                    cond, uncond = torch.chunk(both, 2, dim=0)
                    logits = uncond + (cfg_scale + 1) * (cond - uncond)
                else:
                    logits = logits_of(model(x, attention_mask=attention_mask))
                if logits_eos_inf:
                    logits[:, :, eos_id] = -torch.inf
                noisy = add_gumbel_noise(logits, temperature)
                x0 = torch.argmax(noisy, dim=-1)
                if confidence_eos_eot_inf:
                    # the reference's chained assignment: EOS in the noisy copy, EOT in the logits themselves
                    noisy[:, :, eos_id] = logits[:, :, eot_id] = -torch.inf
                if remasking == "low_confidence":
                    p = F.softmax(logits, dim=-1)
                    x0_p = torch.gather(p, dim=-1, index=x0.unsqueeze(-1)).squeeze(-1)
                else:
                    x0_p = torch.rand((x0.shape[0], x0.shape[1]), device=x0.device)
                x0_p[:, stop:] = -torch.inf
                x0 = torch.where(mask_index, x0, x)
                confidence = torch.where(mask_index, x0_p, -torch.inf)
                transfer = torch.zeros_like(x0, dtype=torch.bool)
                for j in range(confidence.shape[0]):
                    _, idx = torch.topk(confidence[j], k=int(num_transfer[j, i]))
                    transfer[j, idx] = True
                if replay is not None:  # schedule replay: the replayed run's positions (mdm_lens.sampling.replay)
                    x0, transfer = replay.select(blk * per_block + i, x0, transfer)
                x[transfer] = x0[transfer]
                if trace is not None:
                    trace.record(blk * per_block + i, x)
    if return_history:
        return x, trace.history
    return x
