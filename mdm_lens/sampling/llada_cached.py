"""Fast-dLLM's LLaDA samplers (NVlabs/Fast-dLLM `llada/generate.py`) as one plain function.

`cache` picks the reference function: "none" = `generate`, "prefix" = `generate_with_prefix_cache`,
"dual" = `generate_with_dual_cache`; `threshold` turns on confidence-threshold parallel decoding in each.
Same parameters, semantics and random-number use as the reference, so equal seeds give equal tokens.

How they differ from LLaDA's own sampler (`llada_generate`), all as in the reference:
* a block ends as soon as it has no mask left (with a threshold, usually well before `steps`);
* confidences come from a float64 softmax;
* the cached variants run one full forward per block that (re)builds the cache and decodes the block's
  first tokens; the following forwards compute the block plus everything after it ("prefix": keys and
  values of the columns before the block come from the cache) or the block alone ("dual": the columns
  after it come from the cache too, refreshed only at the next block's full forward). The cached
  variants always run at least one cached forward per block, even when the full forward finished it.
* the prefix variant draws (and drops) one extra Gumbel noise tensor per cached step when
  `temperature > 0`: the reference computes it and never uses it, and keeping the draw keeps the
  random stream, hence the tokens, equal.

Extensions that never change tokens of the reference's cases: a batch of prompts (rows decode
independently; the reference takes one) and an `attention_mask` for left-padded prompts (the reference
has none). The forward callable must take `(ids, attention_mask=..., past_key_values=..., use_cache=...,
replace_position=...)` like the native LLaDA model (`families.kv_cache` documents the cache).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int

from .common import CachedForwards, StepInfo, announcing, check_prompt, logits_of, resolve_mask_id
from .replay import Replay, replayed
from .trace import DecodeTrace
from .llada import add_gumbel_noise, get_num_transfer_tokens, validate_llada_args

CACHES = ("none", "prefix", "dual")


def transfer_index(
    logits: Float[torch.Tensor, "b n v"],
    x: Int[torch.Tensor, "b n"],
    mask_index: Bool[torch.Tensor, "b n"],
    temperature: float,
    remasking: str,
    count: torch.Tensor | None,
    threshold: float | None,
):
    """-> (proposed tokens, which columns take them) for one step over the columns in `logits`.

    Without a threshold each row takes its `count` most confident masked columns; with one it takes every
    masked column at or above `threshold`, and always its most confident one."""
    x0 = torch.argmax(add_gumbel_noise(logits, temperature), dim=-1)
    if remasking == "low_confidence":
        probs = F.softmax(logits.to(torch.float64), dim=-1)
        conf = torch.gather(probs, dim=-1, index=x0.unsqueeze(-1)).squeeze(-1)
    else:
        conf = torch.rand((x0.shape[0], x0.shape[1]), device=x0.device)
    x0 = torch.where(mask_index, x0, x)
    conf = torch.where(mask_index, conf, -torch.inf)
    take = torch.zeros_like(x0, dtype=torch.bool)
    if threshold is not None:
        count = mask_index.sum(dim=1)
    for j in range(conf.shape[0]):
        _, idx = torch.topk(conf[j], k=int(count[j]))
        if threshold is not None and idx.numel() > 1:
            keep = ~(conf[j, idx] < threshold)  # the reference drops only those below (a NaN stays)
            keep[0] = True
            idx = idx[keep]
        take[j, idx] = True
    return x0, take


def _check(cache: str, threshold: float | None, per_block: int) -> None:
    if cache not in CACHES:
        raise ValueError(f"unknown cache {cache!r}; use one of {CACHES}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"threshold={threshold} must lie in [0, 1] (a confidence), or be None for a fixed number of tokens per step"
        )
    if cache != "none" and threshold is None and per_block < 2:
        raise ValueError(
            f"cache={cache!r} without a threshold needs at least 2 steps per block (got {per_block}: "
            "the reference indexes a second step); raise steps or pass a threshold"
        )


@torch.no_grad()
def llada_generate_cached(
    model: Callable,
    prompt: Int[torch.Tensor, "b p"],
    attention_mask: torch.Tensor | None = None,
    steps: int = 128,
    gen_length: int = 128,
    block_length: int = 128,
    temperature: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int | None = None,
    threshold: float | None = None,
    cache: str = "dual",
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    stats: dict | None = None,
    trace: DecodeTrace | None = None,
    replay: Replay | None = None,
) -> Int[torch.Tensor, "b total"]:
    """Returns prompt + response ids. `stats`, when given, receives `forwards` (the reference's nfe) and
    `columns` (query columns computed, summed over forwards: what the caches save); `trace` records the forward
    that unmasked each position (`mdm_lens.sampling.trace`)."""
    num_blocks = validate_llada_args(steps, gen_length, block_length, remasking)
    per_block = steps // num_blocks
    _check(cache, threshold, per_block)
    mask_id = resolve_mask_id(model, mask_id, 126336)
    check_prompt(prompt, mask_id)
    b, plen = prompt.shape
    total = plen + gen_length
    x = torch.full((b, total), mask_id, dtype=torch.long, device=prompt.device)
    x[:, :plen] = prompt
    am = None
    if attention_mask is not None:
        am = torch.cat([attention_mask.to(x.device), attention_mask.new_ones((b, gen_length)).to(x.device)], dim=-1)
    # forwards per block: at most `per_block`, or one per token with a threshold (+1 when the first finishes it)
    bound = num_blocks * (per_block if threshold is None else max(block_length, 2))
    with announcing(model, on_step) as announce:
        forward = CachedForwards(
            model,
            x,
            announce,
            trace,
            bound=bound,
            num_blocks=num_blocks,
            prompt_length=plen,
            gen_length=gen_length,
            sampler=f"llada_{cache}",
            attention_mask=am,
        )
        for blk in range(num_blocks):
            start, stop = plen + blk * block_length, plen + (blk + 1) * block_length
            num_transfer = get_num_transfer_tokens(x[:, start:stop] == mask_id, per_block)

            def count(i: int) -> torch.Tensor | None:
                if threshold is not None:
                    return None
                if i >= per_block:
                    raise RuntimeError(
                        f"block {blk} still has masks after its {per_block} steps: the model "
                        f"decoded the mask token id {mask_id} itself (a trained model never does)"
                    )
                return num_transfer[:, i]

            i = 0
            if cache != "none":
                out = forward(x, None, blk, use_cache=True)
                past = out.past_key_values
                if cache == "prefix":
                    past = [(k[:, :, :start], v[:, :, :start]) for k, v in past]
                mask_index = x == mask_id
                mask_index[:, stop:] = False
                x0, take = transfer_index(out.logits, x, mask_index, temperature, remasking, count(0), threshold)
                x0, take = replayed(replay, forward.step - 1, x0, take)
                x[take] = x0[take]
                i = 1
            if cache == "dual":
                replace_position = torch.zeros_like(x, dtype=torch.bool)
                replace_position[:, start:stop] = True
            while True:
                if i > bound:  # a threshold run whose model keeps decoding [MASK]
                    raise RuntimeError(
                        f"block {blk} did not finish in {bound} forwards: the model keeps decoding "
                        f"the mask token id {mask_id}"
                    )
                if cache == "none":
                    mask_index = x == mask_id
                    mask_index[:, stop:] = False
                    logits = logits_of(forward(x, None, blk))
                    x0, take = transfer_index(logits, x, mask_index, temperature, remasking, count(i), threshold)
                    x0, take = replayed(replay, forward.step - 1, x0, take)
                    x[take] = x0[take]
                elif cache == "prefix":
                    view = x[:, start:]
                    mask_index = view == mask_id
                    mask_index[:, block_length:] = False
                    logits = logits_of(forward(view, (start, total), blk, past_key_values=past, use_cache=True))
                    add_gumbel_noise(logits, temperature)  # the reference's unused draw (see module doc)
                    x0, take = transfer_index(logits, view, mask_index, temperature, remasking, count(i), threshold)
                    x0, take = replayed(replay, forward.step - 1, x0, take, start)
                    view[take] = x0[take]
                else:
                    view = x[:, start:stop]
                    mask_index = view == mask_id
                    logits = logits_of(
                        forward(
                            view,
                            (start, stop),
                            blk,
                            past_key_values=past,
                            use_cache=True,
                            replace_position=replace_position,
                        )
                    )
                    x0, take = transfer_index(logits, view, mask_index, temperature, remasking, count(i), threshold)
                    x0, take = replayed(replay, forward.step - 1, x0, take, start)
                    view[take] = x0[take]
                i += 1
                if not bool((x[:, start:stop] == mask_id).any()):
                    break
    forward.finish(stats)
    return x
