"""dllm's BD3LM block-diffusion sampler (ZHZisZZ/dllm `dllm/core/samplers/bd3lm.py`, `BD3LMSampler.sample`).

Same parameters, semantics and random-number use as the reference, so equal seeds give equal tokens. As there:
prompts are left-padded with the pad id to a multiple of `block_size`; the canvas grows one block of masks at a
time. For each block the whole prefix (prompt + finished blocks) runs once with the block-causal mask (a column
sees its own block and earlier ones; pad columns are neither queries nor keys; RoPE positions count non-pad
columns) and `use_cache=True`; then each of the block's steps runs only the block's columns against that prefix
cache (`steps_per_block`, default `ceil(steps / num_blocks)`, linear-schedule counts as MDLM's). Options: CFG
(`cfg_scale`: a second, unconditional prefix and block forward), `right_shift_logits` (the block's first column
takes the prefix's last logits), `stochastic_transfer`; generation stops after a block once every row holds EOS.
Pad columns are found as `x == pad_id`, so a generated token equal to the pad id is padding from then on (as in
the reference).

The step clock, per forward: `step` is the denoising step the forward serves (a block's prefix forward serves
the block's first step: its cache feeds every step of the block; `on_step` hears each step once); `block_span`
the block's canvas columns, `block_step` / `block_num_steps` the step within it; `computed` the columns the
forward computes (the prefix, or the block, whose keys see the cached prefix); `prompt_length` the padded prompt
width and `gen_length` the response columns the canvas holds at that forward (so `ctx.cached` is exactly the
cached prefix).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int

from .common import StepClock, StepInfo, announcing, logits_of
from .llada import add_gumbel_noise
from .mdlm import LeftLayout, Prompts, check_common, num_transfer_tokens, prepare
from .trace import DecodeTrace, trace_for


def block_causal(x: Int[torch.Tensor, "b n"], block_size: int, pad_id: int):
    """-> (bool mask [B, 1, n, n], position ids [B, n]) as the reference's `_prepare_for_sampling` builds them."""
    b, n = x.shape
    valid = x != pad_id
    pos = torch.where(valid, valid.long().cumsum(-1) - 1, torch.zeros_like(x))
    ids = (torch.arange(n, device=x.device) // block_size)[None].expand(b, -1)
    ids = torch.where(valid, ids, torch.full_like(ids, -1))
    q, k = ids.view(b, 1, n, 1), ids.view(b, 1, 1, n)
    return (k <= q) & (q >= 0) & (k >= 0), pos


def _denoise(logits, x_blk, mask_blk: Bool[torch.Tensor, "b l"], counts, temperature: float, remasking: str):
    """One step over the block's columns: keep each row's `counts[j]` most confident masked proposals."""
    if not mask_blk.any():
        return x_blk
    x0 = torch.argmax(add_gumbel_noise(logits, temperature), dim=-1)
    if remasking == "low_confidence":
        x0_p = torch.gather(F.softmax(logits, dim=-1), dim=-1, index=x0.unsqueeze(-1)).squeeze(-1)
    else:
        x0_p = torch.rand(x0.shape, device=x0.device)
    x0 = torch.where(mask_blk, x0, x_blk)
    conf = torch.where(mask_blk, x0_p, torch.full_like(x0_p, -float("inf")))
    take = torch.zeros_like(x0, dtype=torch.bool)
    for j in range(x0.shape[0]):
        k = min(int(counts[j]), int((conf[j] > -float("inf")).sum()))
        if k > 0:
            take[j, torch.topk(conf[j], k).indices] = True
    out = x_blk.clone()
    out[take] = x0[take]
    return out


class _Run:
    """The per-run state the forwards share: the model, the clock, CFG's unconditional ids, step counters.

    Every forward sets the model's clock first; `on_step` (progress bars, callers) hears each denoising step once,
    at its conditional block forward, so its count is `num_steps` (prefix and CFG forwards only set the clock)."""

    def __init__(self, model, announce, block_size: int, pad_id: int, mask_id: int, cfg_scale: float, plen: int):
        self.model, self.announce, self.bs, self.pad, self.mask = model, announce, block_size, pad_id, mask_id
        clock = getattr(model, "step_clock", None)
        self.tick = clock.announce if isinstance(clock, StepClock) else (lambda info: None)
        self.cfg, self.plen = cfg_scale, plen
        self.step, self.num_steps, self.num_blocks = 0, 0, 0

    def info(self, blk: int, span: tuple[int, int], computed: tuple[int, int], bstep: int, bsteps: int) -> StepInfo:
        return StepInfo(
            self.step,
            self.num_steps,
            blk,
            self.num_blocks,
            self.plen,
            computed[1] - self.plen,
            "bd3lm",
            computed=computed,
            block_span=span,
            block_step=bstep,
            block_num_steps=bsteps,
        )

    def prefix(self, x, unmasked, info: StepInfo):
        """The prefix forwards (conditional, and unconditional under CFG) -> [(cache, last logits)]."""
        attn, pos = block_causal(x, self.bs, self.pad)
        outs = []
        for ids in [x] + ([torch.where(unmasked, self.mask, x)] if self.cfg > 0 else []):
            self.tick(info)
            out = self.model(ids, attention_mask=attn, position_ids=pos, use_cache=True)
            outs.append((out.past_key_values, logits_of(out)[:, -1:, :]))
        return outs

    def block(self, x_blk, attn, pos, caches, info: StepInfo, shift: bool):
        """The block's logits against the cached prefix (CFG-combined; right-shifted when asked)."""
        logits = []
        for k, (past, _) in enumerate(caches):
            (self.announce if k == 0 else self.tick)(info)
            logits.append(logits_of(self.model(x_blk, attention_mask=attn, position_ids=pos, past_key_values=past)))
        out = logits[0] if self.cfg <= 0 else logits[1] + (self.cfg + 1.0) * (logits[0] - logits[1])
        if shift:
            last = caches[0][1] if self.cfg <= 0 else caches[1][1] + (self.cfg + 1.0) * (caches[0][1] - caches[1][1])
            out = torch.cat([last, out[:, :-1]], dim=1)
        return out


def _plan(new: int, block_size: int, per_block: int, stochastic: bool) -> int:
    total = 0
    for b in range(math.ceil(new / block_size)):
        width = min(block_size, new - b * block_size)
        total += (
            per_block if stochastic else num_transfer_tokens(torch.ones(1, width, dtype=torch.bool), per_block).size(1)
        )
    return total


@torch.no_grad()
def bd3lm_generate(
    model: Callable,
    prompts: Prompts,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int | None = 128,
    max_length: int | None = None,
    block_size: int = 32,
    steps: int = 128,
    steps_per_block: int | None = None,
    temperature: float = 0.0,
    remasking: str = "low_confidence",
    stochastic_transfer: bool = False,
    cfg_scale: float = 0.0,
    cfg_keep_tokens: list[int] | None = None,
    right_shift_logits: bool = False,
    mask_id: int | None = None,
    *,
    pad_id: int,
    eos_id: int | None = None,
    bos_id: int | None = None,
    left_layout: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    trace: DecodeTrace | None = None,
    return_history: bool = False,
):
    """BD3LMSampler.sample: returns the reference canvas `[B, padded prompt + generated]` (shorter than
    `max_new_tokens` when EOS stopped it), or with `left_layout` `[left-padded prompt, response]` of width
    `P + max_new_tokens` (columns never generated stay the mask id). `trace` / `return_history` record that
    layout's canvas after each denoising step."""
    check_common(steps, block_size, remasking, temperature, cfg_scale)
    if steps_per_block is not None and not (isinstance(steps_per_block, int) and steps_per_block >= 1):
        raise ValueError(f"steps_per_block={steps_per_block!r} must be None or an integer >= 1")
    plist, mask_id, new = prepare(
        model, prompts, attention_mask, mask_id, right_shift_logits, bos_id, max_new_tokens, max_length
    )
    lens = [int(p.shape[0]) for p in plist]
    b_sz, device = len(plist), plist[0].device
    plen = math.ceil(max(lens) / block_size) * block_size
    x = torch.full((b_sz, plen), pad_id, dtype=torch.long, device=device)
    for j, p in enumerate(plist):
        x[j, plen - lens[j] :] = p
    unmasked = (x != mask_id) & (x != pad_id)
    if cfg_keep_tokens:
        unmasked &= ~torch.isin(x, torch.as_tensor(cfg_keep_tokens, device=x.device))
    num_blocks = math.ceil(new / block_size)
    per_block = steps_per_block if steps_per_block is not None else math.ceil(steps / num_blocks)
    relayout = _relayout_fn(prompt_list_left(plist, max(lens), pad_id), plen, new, mask_id)
    trace = trace_for(trace, mask_id, return_history)
    rec = LeftLayout(trace, relayout) if trace is not None and left_layout else trace
    if rec is not None:
        rec.start(x)
    done = torch.zeros((b_sz,), dtype=torch.bool, device=x.device)
    with announcing(model, on_step) as announce:
        run = _Run(model, announce, block_size, pad_id, mask_id, cfg_scale, plen)
        run.num_steps, run.num_blocks = _plan(new, block_size, per_block, stochastic_transfer), num_blocks
        generated = 0
        for blk in range(num_blocks):
            if done.all():
                break
            cur = min(block_size, new - generated)
            t0, t1 = x.shape[1], x.shape[1] + cur
            # the schedule of a fresh block (all masks) before its prefix forward: forwards draw no random numbers,
            # so the binomial draws stay where the reference makes them
            schedule = num_transfer_tokens(
                torch.ones((b_sz, cur), dtype=torch.bool, device=x.device), per_block, stochastic_transfer
            )
            caches = run.prefix(x, unmasked, run.info(blk, (t0, t1), (0, t0), 0, schedule.size(1)))
            x = torch.cat([x, torch.full((b_sz, cur), mask_id, dtype=torch.long, device=x.device)], dim=1)
            unmasked = torch.cat([unmasked, torch.zeros((b_sz, cur), dtype=torch.bool, device=x.device)], dim=1)
            attn, pos = block_causal(x, block_size, pad_id)
            attn, pos = attn[:, :, t0:t1, :], pos[:, t0:t1]
            for i in range(schedule.size(1)):
                mask_blk = x[:, t0:t1] == mask_id
                if not mask_blk.any():
                    break
                info = run.info(blk, (t0, t1), (t0, t1), i, schedule.size(1))
                logits = run.block(x[:, t0:t1], attn, pos, caches, info, right_shift_logits)
                x[:, t0:t1] = _denoise(logits, x[:, t0:t1], mask_blk, schedule[:, i], temperature, remasking)
                if rec is not None:
                    rec.record(run.step, x)
                run.step += 1
            if eos_id is not None:
                done |= (x[:, t0:t1] == eos_id).any(dim=1)
            generated += cur
    out = relayout(x) if left_layout else x
    if return_history:
        assert trace is not None  # trace_for made one
        return out, trace.history
    return out


def _relayout_fn(left: torch.Tensor, plen: int, new: int, mask_id: int):
    """BD3LM canvas (padded prompt of `plen` columns, blocks so far) -> [left-padded prompt, response of `new`],
    columns not generated yet (or never, after an EOS stop) shown as the mask id."""
    width = left.shape[1]

    def relayout(canvas: torch.Tensor) -> torch.Tensor:
        out = torch.full((left.shape[0], width + new), mask_id, dtype=torch.long, device=canvas.device)
        out[:, :width] = left
        gen = canvas[:, plen:]
        out[:, width : width + gen.shape[1]] = gen
        return out

    return relayout


def prompt_list_left(plist: list, width: int, pad_id: int) -> torch.Tensor:
    """The prompts left-padded with `pad_id` to `width` columns."""
    out = torch.full((len(plist), width), pad_id, dtype=torch.long, device=plist[0].device)
    for j, p in enumerate(plist):
        out[j, width - p.shape[0] :] = p
    return out
