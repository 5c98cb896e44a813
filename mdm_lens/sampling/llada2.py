"""LLaDA2's block-diffusion sampler (the hub model's own `LLaDA2MoeModelLM.generate`) as a plain function.

Reference: `generate` in `modeling_llada2_moe.py` (inclusionAI/LLaDA2.0-mini, mirrored in ZHZisZZ/dllm
`dllm/pipelines/llada2/models/`). Same parameters, semantics and random-number use, so equal seeds give
equal tokens. The canvas is the prompt followed by masks, padded with masks to a whole number of blocks
(blocks are aligned to column 0, so the first denoised block may hold the prompt's tail). Block `b` is
denoised by forwards over columns `[0, end of b)` under the block-causal mask (bidirectional inside a
block, causal across blocks; built as the reference builds it: `log` of a 0/1 matrix, cast to bfloat16,
then to the model's dtype, where 0 and -inf are exact). Each step:

* samples a token and its probability at every column of the block (greedy at temperature 0, else
  temperature / top-k / top-p then one `torch.multinomial` draw per column, all in the logits' dtype);
* takes every masked column whose probability exceeds `threshold` if there are at least the schedule's
  count of them (`block_length` spread evenly over `steps`), else the schedule's count of most confident
  ones (threshold parallel decoding); a block ends early once it has no mask left;
* `steps` is first capped at `gen_length // minimal_topk`.

A row stops after the block in which it decoded `eos_id` (always, as the reference does), or, with
`eos_early_stop`, as soon as a step decodes an EOS with no mask left before it.

Extensions that never change the reference's tokens: a batch of prompts (rows decode independently: a
stopped row is frozen; with temperature > 0 the batch shares one random stream), a `[batch, prompt]`
`attention_mask` for left padding (padded key columns are hidden from every query but their own; positions
count real tokens), the returned canvas (prompt + `gen_length` columns; `reference_answer` cuts it as the
reference's return value does); `eos_id` / `mask_id` default to the model's own (`resolve_eos_id`; -1 never
stops). Deliberate differences: EOS is searched in the response only (the reference's early stop also
matches an EOS inside the prompt and then returns an empty answer); the reference takes one prompt and runs
in bfloat16 only (its SDPA call refuses the bf16 mask beside float32 queries), we cast the mask to the
model's dtype, exact for 0 / -inf, so float32 runs too.

How dllm's `LLaDA2Sampler` (`dllm/pipelines/llada2/sampler.py`) differs, for the record: it never stops
after a block holding EOS (it denoises every block), and with `eos_early_stop` it only ends the *current
block* once any row's block holds an EOS (leaving that block's remaining masks) and goes on to the next
block; `top_p` of 0 means no filtering there (the hub keeps the single top token); it returns the
whole block-padded canvas. Tokens agree with the hub's wherever no EOS is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int

from .common import StepInfo, announcing, check_prompt, logits_of, resolve_mask_id
from .trace import DecodeTrace, trace_for

MASK_ID = 156895  # inclusionAI/LLaDA2.0-mini's <|mask|>
EOS_ID = 156892  # and its <|endoftext|>, the reference's defaults


def top_k_logits(logits: Float[torch.Tensor, "n v"], k: int | None) -> Float[torch.Tensor, "n v"]:
    """Logits below the k-th largest become -inf (None or k <= 0: unchanged)."""
    if k is None or k <= 0:
        return logits
    kth = torch.topk(logits, k)[0][..., -1, None]
    return torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)


def top_p_logits(logits: Float[torch.Tensor, "n v"], p: float | None) -> Float[torch.Tensor, "n v"]:
    """Nucleus filter: keep the smallest top set whose probability exceeds p (None or p >= 1: unchanged)."""
    if p is None or p >= 1.0:
        return logits
    ordered, order = torch.sort(logits, descending=True)
    drop = torch.cumsum(F.softmax(ordered, dim=-1), dim=-1) > p
    drop[..., 1:] = drop[..., :-1].clone()
    drop[..., 0] = False
    drop = torch.scatter(torch.zeros_like(logits, dtype=torch.bool), -1, order, drop)
    return logits.masked_fill(drop, float("-inf"))


def sample_tokens(
    logits: Float[torch.Tensor, "b n v"], temperature: float, top_k: int | None, top_p: float | None
) -> tuple[Int[torch.Tensor, "b n"], Float[torch.Tensor, "b n"]]:
    """-> (token, its probability) per column; probabilities in the logits' dtype, as the reference's."""
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    if temperature == 0.0:
        probs = F.softmax(flat, dim=-1)
        token = torch.argmax(probs, dim=-1, keepdim=True)
    else:
        if temperature != 1.0:
            flat = flat / temperature
        probs = F.softmax(top_p_logits(top_k_logits(flat, top_k), top_p), dim=-1)
        token = torch.multinomial(probs, num_samples=1)
    return token.view(*shape), torch.gather(probs, -1, token).view(*shape)


def transfer_schedule(block_length: int, steps: int) -> Int[torch.Tensor, " steps"]:
    """How many columns each step of a block must at least decode: `block_length` spread evenly, the
    remainder to the first steps."""
    out = torch.full((steps,), block_length // steps, dtype=torch.int64)
    out[: block_length % steps] += 1
    return out


def block_causal_mask(
    num_blocks: int, block_length: int, device: torch.device, dtype: torch.dtype | None = None
) -> Float[torch.Tensor, "1 1 n n"]:
    """Additive mask, 0 where a query's block is at or after the key's block, -inf elsewhere; built in
    bfloat16 as the reference does, then cast to `dtype` (0 and -inf are exact in every float dtype)."""
    blocks = torch.tril(torch.ones(num_blocks, num_blocks, device=device))
    full = blocks.repeat_interleave(block_length, dim=0).repeat_interleave(block_length, dim=1)
    mask = full[None, None].log().to(torch.bfloat16)
    return mask if dtype is None else mask.to(dtype)


@dataclass(frozen=True)
class BlockPlan:
    """The geometry of one generation: canvas width, blocks, the first block to denoise, steps per block."""

    prompt_length: int
    gen_length: int
    block_length: int
    steps: int  # per block, after the minimal_topk cap

    @property
    def num_blocks(self) -> int:
        return -(-(self.prompt_length + self.gen_length) // self.block_length)

    @property
    def total(self) -> int:
        return self.num_blocks * self.block_length

    @property
    def first_block(self) -> int:
        return self.prompt_length // self.block_length

    def span(self, blk: int) -> tuple[int, int]:
        return blk * self.block_length, (blk + 1) * self.block_length


def check_llada2_args(
    block_length: int,
    steps: int,
    gen_length: int,
    minimal_topk: int,
    threshold: float,
    top_k: int | None,
    top_p: float | None,
) -> int:
    """The options the reference would misuse silently, refused with the valid range. -> steps per block."""
    for name, v in (("block_length", block_length), ("steps", steps), ("gen_length", gen_length)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if isinstance(minimal_topk, bool) or not isinstance(minimal_topk, int) or not 1 <= minimal_topk <= gen_length:
        raise ValueError(
            f"minimal_topk={minimal_topk!r} must be an integer in [1, gen_length={gen_length}] (steps are capped "
            "at gen_length // minimal_topk; a larger value would leave no step and return only masks)"
        )
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be a number in [0, 1] (a probability; 1 never fires)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
        raise ValueError(f"top_k={top_k!r} must be None or an integer (<= 0 keeps every token)")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 <= top_p):
        raise ValueError(f"top_p={top_p!r} must be None or a number >= 0 (>= 1 keeps every token)")
    return min(steps, gen_length // minimal_topk)


def select_columns(
    active: Bool[torch.Tensor, "b n"], probs: Float[torch.Tensor, "b n"], count: int, threshold: float
) -> Bool[torch.Tensor, "b n"]:
    """Per row: the masked columns above `threshold` when there are at least `count`, else the `count` most
    confident masked ones (the reference's rule, row by row)."""
    confidence = torch.where(active, probs, -torch.inf)
    high = confidence > threshold  # compared in the probabilities' dtype, as the reference does
    take = torch.zeros_like(active)
    for r in range(active.shape[0]):
        if int(high[r].sum()) >= count:
            take[r] = high[r]
        else:
            _, idx = torch.topk(confidence[r], k=min(count, int(active[r].sum())))
            take[r, idx] = True
    return take


def first_eos(row: Int[torch.Tensor, " n"], prompt_length: int, eos_id: int) -> int | None:
    """Canvas column of the first EOS in the response part of `row`, None if there is none."""
    hits = (row[prompt_length:] == eos_id).nonzero()
    return prompt_length + int(hits[0]) if hits.numel() else None


def reference_answer(
    sequences: Int[torch.Tensor, "b total"], prompt_length: int, eos_id: int
) -> list[Int[torch.Tensor, " n"]]:
    """What the reference `generate` returns for each row: the response up to and including its first EOS."""
    out = []
    for row in sequences:
        eos = first_eos(row, prompt_length, eos_id)
        out.append(row[prompt_length : (len(row) if eos is None else eos + 1)])
    return out


def padded_inputs(
    plan: BlockPlan, attention_mask: torch.Tensor | None, b: int, device: torch.device, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (4-D additive mask [b or 1, 1, total, total], position ids [b or 1, total]) for the whole canvas."""
    mask = block_causal_mask(plan.num_blocks, plan.block_length, device, dtype)
    pos = torch.arange(plan.total, device=device).unsqueeze(0)
    if attention_mask is None or bool(attention_mask.all()):
        return mask, pos
    keep = torch.ones((b, plan.total), dtype=torch.bool, device=device)
    keep[:, : plan.prompt_length] = attention_mask.to(device).bool()
    hidden = ~keep[:, None, None, :] & ~torch.eye(plan.total, dtype=torch.bool, device=device)
    mask = mask.expand(b, 1, plan.total, plan.total).masked_fill(hidden, float("-inf"))
    return mask, (keep.long().cumsum(-1) - 1).clamp_min(0)


def resolve_eos_id(model, eos_id: int | None) -> int:
    """The EOS id a run stops on: the one passed, else the model's (its tokenizer's, then its config's
    `eos_token_id`), else LLaDA2's 156892 (the reference's default). Pass -1 to never stop on EOS."""
    if eos_id is not None:
        return int(eos_id)
    own = getattr(getattr(model, "tokenizer", None), "eos_token_id", None)
    if own is None:
        cfg = getattr(model, "config", None)
        own = cfg.get("eos_token_id") if isinstance(cfg, dict) else getattr(cfg, "eos_token_id", None)
    return int(own) if isinstance(own, int) and not isinstance(own, bool) else EOS_ID


def model_dtype(model) -> torch.dtype | None:
    """The float dtype the model computes in (its parameters'), None for a bare callable without any."""
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    params = getattr(model, "parameters", None)
    first = next(params(), None) if callable(params) else None
    return first.dtype if first is not None and first.dtype.is_floating_point else None


class FullWindow:
    """The reference's forwards: every step feeds columns [0, end of block) under the block-causal mask."""

    def __init__(self, model: Callable, mask: torch.Tensor, pos: torch.Tensor):
        self.model, self.mask, self.pos = model, mask, pos
        self.stats = {"forwards": 0, "columns": 0}

    def computed(self, start: int, stop: int) -> tuple[int, int] | None:
        return None  # every column fed is computed; none comes from a cache

    def logits(self, x: torch.Tensor, start: int, stop: int) -> Float[torch.Tensor, "b n v"]:
        self.stats["forwards"] += 1
        self.stats["columns"] += x.shape[0] * stop
        out = self.model(x[:, :stop], attention_mask=self.mask[:, :, :stop, :stop], position_ids=self.pos[:, :stop])
        return logits_of(out)[:, start:stop]


@dataclass
class Decoding:
    """What one step needs besides the logits: the sampling and stopping options."""

    temperature: float
    top_k: int | None
    top_p: float | None
    threshold: float
    eos_id: int
    eos_early_stop: bool
    mask_id: int


def denoise_blocks(
    window,
    x: Int[torch.Tensor, "b total"],
    plan: BlockPlan,
    opts: Decoding,
    announce: Callable[[StepInfo], None],
    trace: DecodeTrace | None,
    sampler: str,
) -> None:
    """The reference's block loop over canvas `x` (written in place); `window` runs the forwards
    (`FullWindow`, or the KV-cached `llada2_cached.CachedWindow`)."""
    b, plen, mask_id = x.shape[0], plan.prompt_length, opts.mask_id
    live = torch.ones(b, dtype=torch.bool, device=x.device)  # rows not stopped by an EOS
    schedule = transfer_schedule(plan.block_length, plan.steps).tolist()
    n_gen = plan.num_blocks - plan.first_block
    out = x[:, : plen + plan.gen_length]  # the trace's canvas: what the sampler returns
    step = 0
    for blk in range(plan.first_block, plan.num_blocks):
        start, stop = plan.span(blk)
        for i in range(plan.steps):
            active = (x[:, start:stop] == mask_id) & live[:, None]
            if not bool(active.any()):
                break
            announce(
                StepInfo(
                    step, plan.steps * n_gen, blk - plan.first_block, n_gen, plen, plan.gen_length, sampler,
                    computed=window.computed(start, stop), block_span=(start, stop), block_step=i,
                    block_num_steps=plan.steps,
                )
            )  # fmt: skip
            logits = window.logits(x, start, stop)
            tokens, probs = sample_tokens(logits, opts.temperature, opts.top_k, opts.top_p)
            take = select_columns(active, probs, schedule[i], opts.threshold)
            x[:, start:stop][take] = tokens[take]
            if trace is not None:
                trace.record(step, out)
            step += 1
            if opts.eos_early_stop:
                for r in (take & (tokens == opts.eos_id)).any(-1).nonzero().flatten().tolist():
                    eos = first_eos(x[r], plen, opts.eos_id)
                    if eos is not None and bool((x[r, plen:eos] != mask_id).all()):
                        live[r] = False  # the reference returns here
            if not bool(live.any()):
                return
        live &= ~(x[:, plen:stop] == opts.eos_id).any(-1)  # after every block, with or without early stop
        if not bool(live.any()):
            return


@torch.no_grad()
def llada2_generate(
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
    """LLaDA2 block diffusion; returns prompt + `gen_length` response columns (and the canvas after every step
    when `return_history`). Columns a stopped row never decoded hold `mask_id`; `reference_answer` gives what
    the reference returns. The model is called as `model(ids, attention_mask=<4-D additive>, position_ids=)`.
    `stats` receives `forwards` and `columns` (query columns computed)."""
    plan = prepare(model, prompt, block_length, steps, gen_length, minimal_topk, threshold, top_k, top_p)
    mask_id = resolve_mask_id(model, mask_id, MASK_ID)
    check_prompt(prompt, mask_id)
    x = start_canvas(prompt, plan, mask_id)
    mask, pos = padded_inputs(plan, attention_mask, x.shape[0], x.device, model_dtype(model))
    window = FullWindow(model, mask, pos)
    opts = Decoding(temperature, top_k, top_p, threshold, resolve_eos_id(model, eos_id), eos_early_stop, mask_id)
    trace = trace_for(trace, mask_id, return_history)
    if trace is not None:
        trace.start(x[:, : plan.prompt_length + gen_length])
    with announcing(model, on_step) as announce:
        denoise_blocks(window, x, plan, opts, announce, trace, "llada2")
    if stats is not None:
        stats.update(window.stats)
    seqs = x[:, : plan.prompt_length + gen_length]
    if return_history:
        assert trace is not None  # trace_for made one
        return seqs, trace.history
    return seqs


def prepare(
    model: Callable,
    prompt: torch.Tensor,
    block_length: int,
    steps: int,
    gen_length: int,
    minimal_topk: int,
    threshold: float,
    top_k: int | None,
    top_p: float | None,
) -> BlockPlan:
    """Checks the options and returns the block plan (before any forward)."""
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2:
        raise ValueError("prompt must be a [batch, length] tensor of token ids")
    per_block = check_llada2_args(block_length, steps, gen_length, minimal_topk, threshold, top_k, top_p)
    return BlockPlan(prompt.shape[1], gen_length, block_length, per_block)


def start_canvas(prompt: torch.Tensor, plan: BlockPlan, mask_id: int) -> Int[torch.Tensor, "b total"]:
    """The prompt followed by masks, `plan.total` columns wide."""
    x = torch.full((prompt.shape[0], plan.total), mask_id, dtype=torch.long, device=prompt.device)
    x[:, : plan.prompt_length] = prompt
    return x
