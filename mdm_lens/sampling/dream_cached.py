"""Fast-dLLM's block-cached Dream sampler (NVlabs/Fast-dLLM `dream/model/generation_utils_block.py`,
`_sample` behind `diffusion_generate(..., block_length, dual_cache, threshold)`) as a plain function.

Per block, as in the reference: one full forward (re)builds the cache and decodes the block's *first*
column only; then cached forwards compute the block and everything after it (`cache="prefix"`, the
reference's `dual_cache=False`) or the block alone (`cache="dual"`). Two decoding rules:

* `threshold=None` (any `alg` but "confidence_threshold" in the reference): negative-entropy confidence
  whatever the alg, and the `steps // num_blocks` timestep schedule of the original sampler restricted to
  the block; a block given one step keeps its other columns masked, as in the reference;
* `threshold=t` (`alg="confidence_threshold"`): every masked block column whose sampled-token probability
  reaches t, and always the most confident one, until the block is done.

Logits are shifted one column right *within the computed slice* (the slice's first column keeps its own
logits, a reference quirk that never matters since that column is decoded by the full forward).
Differences that never change tokens: the reference's last forward of a block that ran out of steps is
skipped (it discards that output), and batches decode per row (the reference's threshold rule takes one).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Int

from .common import CachedForwards, StepInfo, announcing, check_prompt, logits_of, resolve_mask_id
from .replay import Replay, replayed
from .trace import DecodeTrace
from .dream import sample_tokens
from .llada_cached import CACHES


def _shift(logits: torch.Tensor) -> torch.Tensor:
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def _check(cache: str, threshold: float | None, max_new_tokens: int, block_length: int, steps: int) -> int:
    if cache not in CACHES[1:]:
        raise ValueError(f"unknown cache {cache!r}; use 'prefix' or 'dual' (the uncached sampler is dream_generate)")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"threshold={threshold} must lie in [0, 1] (a confidence), or be None for the timestep schedule"
        )
    if min(max_new_tokens, block_length, steps) <= 0 or max_new_tokens % block_length:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} must be a positive multiple of block_length={block_length}"
            f" (and steps={steps} positive)"
        )
    num_blocks = max_new_tokens // block_length
    if steps % num_blocks:
        raise ValueError(f"steps={steps} is not divisible by the {num_blocks} blocks; use a multiple of {num_blocks}")
    return num_blocks


@torch.no_grad()
def dream_generate_cached(
    model: Callable,
    input_ids: Int[torch.Tensor, "b p"],
    max_new_tokens: int = 128,
    steps: int = 128,
    block_length: int = 32,
    threshold: float | None = None,
    cache: str = "prefix",
    eps: float = 1e-3,
    alg_temp: float | None = None,
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = None,
    mask_token_id: int | None = None,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    stats: dict | None = None,
    trace: DecodeTrace | None = None,
    replay: Replay | None = None,
) -> Int[torch.Tensor, "b total"]:
    """Returns prompt + response ids; `stats` receives `forwards` like `llada_generate_cached`; `trace` records the
    forward that unmasked each position (`mdm_lens.sampling.trace`)."""
    num_blocks = _check(cache, threshold, max_new_tokens, block_length, steps)
    mask_token_id = resolve_mask_id(model, mask_token_id, 151666)
    check_prompt(input_ids, mask_token_id)
    b, plen = input_ids.shape
    total = plen + max_new_tokens
    x = F.pad(input_ids, (0, max_new_tokens), value=mask_token_id)
    per_block = steps // num_blocks
    timesteps = torch.linspace(1, eps, per_block + 1, device=x.device)
    bound = num_blocks * (per_block if threshold is None else block_length)
    rows = torch.arange(b, device=x.device)
    with announcing(model, on_step) as announce:
        forward = CachedForwards(
            model,
            x,
            announce,
            trace,
            bound=bound,
            num_blocks=num_blocks,
            prompt_length=plen,
            gen_length=max_new_tokens,
            sampler=f"dream_{cache}",
        )
        for blk in range(num_blocks):
            start, stop = plen + blk * block_length, plen + (blk + 1) * block_length
            out = forward(x, None, blk, use_cache=True)
            _, x0 = sample_tokens(_shift(out.logits), temperature=temperature, top_p=top_p, top_k=top_k)
            if replay is None:
                x[:, start] = x0[:, start]
            else:  # schedule replay (mdm_lens.sampling.replay): the block's first column
                first = torch.zeros_like(x, dtype=torch.bool)
                first[:, start] = True
                x0, first = replay.select(forward.step - 1, x0, first)
                x[first] = x0[first]
            past = out.past_key_values
            end = total if cache == "prefix" else stop
            kw = {"past_key_values": past, "use_cache": True}
            if cache == "prefix":
                kw["past_key_values"] = [(k[:, :, :start], v[:, :, :start]) for k, v in past]
            else:
                kw["replace_position"] = torch.zeros_like(x, dtype=torch.bool)
                kw["replace_position"][:, start:stop] = True
            i = 1
            while True:
                if threshold is None and i == per_block:
                    break
                if i > bound:
                    raise RuntimeError(
                        f"block {blk} did not finish in {bound} forwards: the model keeps decoding the "
                        f"mask token id {mask_token_id}"
                    )
                view = x[:, start:end]
                mask_index = view == mask_token_id
                logits = _shift(logits_of(forward(view, (start, end), blk, **kw)))
                proposal = torch.full_like(view, mask_token_id)
                conf = torch.full(view.shape, -torch.inf, dtype=logits.dtype, device=x.device)
                if threshold is not None:
                    c, x0 = sample_tokens(logits[mask_index], temperature=temperature, top_p=top_p, top_k=top_k)
                    proposal[mask_index], conf[mask_index] = x0, c
                    conf[:, block_length:] = -torch.inf
                    take = torch.zeros_like(mask_index)
                    for j in range(b):
                        n = int((x[j, start:stop] == mask_token_id).sum())
                        sel_conf, sel = torch.topk(conf[j], n)
                        keep = ~(sel_conf < threshold)  # the reference drops only those below
                        keep[:1] = True
                        take[j, sel[keep]] = True
                    proposal, take = replayed(replay, forward.step - 1, proposal, take, start)
                    view[take] = proposal[take]
                else:
                    t, s = timesteps[i], timesteps[i + 1]
                    mask_index[:, block_length:] = False
                    c, x0 = sample_tokens(logits[mask_index], temperature, top_p=top_p, top_k=top_k, neg_entropy=True)
                    proposal[mask_index], conf[mask_index] = x0, c
                    per_row = mask_index.sum() / b
                    n = int(per_row * (1 - s / t)) if i < per_block - 1 else int(per_row)
                    if n > 0:
                        if alg_temp is None or alg_temp == 0:
                            _, idx = torch.topk(conf, n)
                        else:
                            idx = torch.multinomial(F.softmax(conf / alg_temp, dim=-1), num_samples=n)
                        r = rows[:, None].expand_as(idx)
                        if replay is None:
                            view[r, idx] = proposal[r, idx]
                    if replay is not None:  # schedule replay: the draws above stay, the schedule writes
                        proposal, take = replay.select(forward.step - 1, proposal, None, start)
                        view[take] = proposal[take]
                i += 1
                if not bool((x[:, start:stop] == mask_token_id).any()):
                    break
    forward.finish(stats)
    return x
