"""dllm's MDLM sampler (ZHZisZZ/dllm `dllm/core/samplers/mdlm.py`, `MDLMSampler.sample`) as a plain function.

Same parameters, semantics and random-number use as the reference, so equal seeds give equal tokens. What it
does, all as there: each prompt keeps its own length; its `max_new_tokens` masks follow it directly and the
canvas is right-padded with EOS to `max(prompt) + max_new_tokens` (attention mask 0 on that tail). The response
is split into blocks of `block_size`, each denoised in `ceil(steps / num_blocks)` steps by the linear alpha
schedule's `get_num_transfer_tokens` (steps that would reveal nothing are dropped), with low-confidence (or
random) remasking; a block's window only bounds positions from above, so a column an earlier step "decoded" as
the mask id itself stays eligible. Options: classifier-free guidance (`cfg_scale`, `cfg_keep_tokens`), banned
tokens (`suppress_tokens`; `begin_suppress_tokens` only enters the confidences, as in the reference), AR-style
`right_shift_logits`, `stochastic_transfer` (binomial schedule).

Extensions that never change tokens: prompts may come as a left-padded `[B, P]` tensor with its attention mask
(the padding is stripped to give the reference's per-prompt lists); `left_layout=True` returns (and traces) the
canvas re-laid as `[pads, prompt, response]` of width `P + max_new_tokens`, the layout `HookedMDM.generate`
slices; every forward announces its `StepInfo` (`sampler="mdlm"`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int

from .common import StepInfo, announcing, logits_of, resolve_mask_id
from .llada import add_gumbel_noise
from .trace import DecodeTrace, trace_for

REMASKING = ("low_confidence", "random")
Prompts = torch.Tensor | Sequence[Sequence[int] | torch.Tensor]


def num_transfer_tokens(
    mask_index: Bool[torch.Tensor, "b n"], steps: int, stochastic: bool = False
) -> Int[torch.Tensor, "b k"]:
    """dllm's `get_num_transfer_tokens` under its default (linear) alpha schedule: step j of `steps` reveals
    round(remaining * (1 - s/t)) tokens, s/t computed in float32 as the scheduler does (binomial draws when
    `stochastic`, consuming the RNG as the reference does); zero steps dropped, rows right-padded with zeros."""
    mask_num = mask_index.sum(dim=1, keepdim=True)
    out = torch.zeros(mask_num.size(0), steps, device=mask_index.device, dtype=torch.int64)
    for i in range(mask_num.size(0)):
        for j in range(steps):
            s, t = (steps - 1 - j) / steps, (steps - j) / steps
            a_s = 1 - torch.as_tensor(s, dtype=torch.float32)
            a_t = 1 - torch.as_tensor(t, dtype=torch.float32)
            prob = 1 - ((1 - a_s) / (1 - a_t)).item()
            n = mask_num[i, 0].to(torch.float64)
            if stochastic:
                out[i, j] = (
                    torch.distributions.Binomial(n, torch.as_tensor(prob, dtype=torch.float64, device=n.device))
                    .sample()
                    .to(torch.int64)
                )
            else:
                out[i, j] = torch.round(n * prob).to(torch.int64)
            out[i, j] = torch.minimum(out[i, j], mask_num[i, 0])
            mask_num[i, 0] -= out[i, j]
            if mask_num[i, 0].item() == 0:
                break
    rows = [r[r > 0] for r in out]
    width = max(r.numel() for r in rows)
    return torch.stack([torch.cat([r, r.new_zeros(width - r.numel())]) for r in rows])


def prompt_list(prompts: Prompts, attention_mask: torch.Tensor | None, device: torch.device | None) -> list:
    """The reference's per-prompt id tensors: list entries as given, or the rows of a left-padded tensor with
    their padding (attention_mask 0) stripped."""
    if not isinstance(prompts, torch.Tensor):
        return [torch.as_tensor(p, dtype=torch.long, device=device) for p in prompts]
    if prompts.dim() != 2:
        raise ValueError(f"prompt tensor must be [batch, length], got shape {tuple(prompts.shape)}")
    if attention_mask is None:
        return list(prompts)
    keep = attention_mask.to(prompts.device).bool()
    lens = keep.sum(1)
    left = torch.arange(prompts.shape[1], device=keep.device)[None] >= (prompts.shape[1] - lens)[:, None]
    if not bool((keep == left).all()):
        raise ValueError("attention_mask must be left padding (0s then 1s in every row), as encode_prompts builds it")
    return [row[row.shape[0] - int(n) :] for row, n in zip(prompts, lens)]


def check_common(steps: int, block_size: int, remasking: str, temperature: float, cfg_scale: float) -> None:
    for key, val in (("steps", steps), ("block_size", block_size)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{key}={val!r} is invalid: {key} must be an integer >= 1")
    if remasking not in REMASKING:
        raise ValueError(f"unknown remasking {remasking!r}; use one of {REMASKING}")
    if not (temperature >= 0 and math.isfinite(temperature)) or not (cfg_scale >= 0 and math.isfinite(cfg_scale)):
        raise ValueError(f"temperature={temperature!r} and cfg_scale={cfg_scale!r} must be finite numbers >= 0")


def check_ids(prompts: list, mask_id: int) -> None:
    for i, p in enumerate(prompts):
        if bool((p == mask_id).any()):
            raise ValueError(f"prompt {i} contains the mask token id {mask_id}; the sampler would generate there")


def prepare(model, prompts: Prompts, attention_mask, mask_id, shift: bool, bos_id, max_new_tokens, max_length):
    """What both dllm samplers do before the canvas: the mask id, per-prompt ids (an empty prompt starts with BOS
    under `right_shift_logits`), and the response length (`max_new_tokens`, else `max_length - max(prompt)`)."""
    device = prompts.device if isinstance(prompts, torch.Tensor) else getattr(model, "device", None)
    mask_id = resolve_mask_id(model, mask_id, -1)
    if mask_id < 0:
        raise ValueError("mask_id is needed: pass mask_id=..., or run on a model that knows its mask token")
    plist = prompt_list(prompts, attention_mask, device)
    if not plist:
        raise ValueError("no prompts given; pass a [batch, length] tensor or a list of id lists")
    if shift:
        if any(p.numel() == 0 for p in plist) and bos_id is None:
            raise ValueError("right_shift_logits with an empty prompt needs bos_id (the reference starts it with BOS)")
        plist = [torch.tensor([bos_id], device=p.device) if p.numel() == 0 else p for p in plist]
    check_ids(plist, mask_id)
    longest = max(int(p.shape[0]) for p in plist)
    if not max_new_tokens:
        if max_length is None or max_length <= longest:
            raise ValueError(
                f"max_new_tokens={max_new_tokens!r}, max_length={max_length!r}: give max_new_tokens >= 1 (or a "
                f"max_length above the longest prompt, {longest})"
            )
        max_new_tokens = max_length - longest
    return plist, mask_id, int(max_new_tokens)


class LeftLayout:
    """A DecodeTrace seen through a re-layout of the sampler's canvas (`relayout(x)` -> [B, P + N])."""

    def __init__(self, trace: DecodeTrace, relayout: Callable[[torch.Tensor], torch.Tensor]):
        self.trace, self.relayout = trace, relayout

    def start(self, x: torch.Tensor) -> None:
        self.trace.start(self.relayout(x))

    def record(self, step: int, x: torch.Tensor) -> None:
        self.trace.record(step, self.relayout(x))


def _relayout_fn(lens: list[int], width: int, new: int, pad_id: int):
    """MDLM canvas (prompt at column 0, response after it, EOS tail) -> [pads, prompt, response] of width+new."""

    def relayout(x: torch.Tensor) -> torch.Tensor:
        shift = torch.tensor([width - n for n in lens], device=x.device)[:, None]
        cols = torch.arange(width + new, device=x.device)[None] - shift
        return torch.where(cols >= 0, x.gather(1, cols.clamp(min=0)), torch.full_like(cols, pad_id))

    return relayout


def _plan(prompt_lens: list[int], new: int, block_size: int, per_block: int, stochastic: bool) -> int:
    """Forwards the run will make (its StepInfo.num_steps): exact for a fixed schedule, the bound when binomial."""
    num_blocks = math.ceil(new / block_size)
    if stochastic:
        return num_blocks * per_block
    total = 0
    for b in range(num_blocks):
        widths = [max(0, min(block_size, new - b * block_size)) for _ in prompt_lens]
        idx = torch.arange(block_size)[None] < torch.tensor(widths)[:, None]
        total += num_transfer_tokens(idx, per_block).size(1)
    return total


@torch.no_grad()
def mdlm_generate(
    model: Callable,
    prompts: Prompts,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int | None = 128,
    max_length: int | None = None,
    block_size: int = 128,
    steps: int = 128,
    temperature: float = 0.0,
    remasking: str = "low_confidence",
    stochastic_transfer: bool = False,
    cfg_scale: float = 0.0,
    cfg_keep_tokens: list[int] | None = None,
    suppress_tokens: list[int] | None = None,
    begin_suppress_tokens: list[int] | None = None,
    right_shift_logits: bool = False,
    mask_id: int | None = None,
    *,
    eos_id: int,
    bos_id: int | None = None,
    pad_id: int | None = None,
    left_layout: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    trace: DecodeTrace | None = None,
    return_history: bool = False,
):
    """MDLMSampler.sample: returns the reference canvas `[B, max(prompt) + max_new_tokens]` (or, with
    `left_layout`, `[pads, prompt, response]`; `pad_id` fills the pads, default EOS). `trace` / `return_history`
    record the canvas after each step (in the returned layout)."""
    check_common(steps, block_size, remasking, temperature, cfg_scale)
    plist, mask_id, new = prepare(
        model, prompts, attention_mask, mask_id, right_shift_logits, bos_id, max_new_tokens, max_length
    )
    lens = [int(p.shape[0]) for p in plist]
    b_sz, width, device = len(plist), max(lens) + new, plist[0].device
    x = torch.full((b_sz, width), eos_id, dtype=torch.long, device=device)
    attn = torch.zeros((b_sz, width), dtype=torch.long, device=device)
    for i, p in enumerate(plist):
        x[i, : lens[i]] = p
        x[i, lens[i] : lens[i] + new] = mask_id
        attn[i, : min(lens[i] + new, width)] = 1
    unmasked = (x != mask_id) & attn.bool()
    if cfg_keep_tokens:
        unmasked &= ~torch.isin(x, torch.as_tensor(cfg_keep_tokens, device=x.device))
    num_blocks = math.ceil(new / block_size)
    per_block = math.ceil(steps / num_blocks)
    relayout = _relayout_fn(lens, max(lens), new, eos_id if pad_id is None else pad_id) if left_layout else None
    trace = trace_for(trace, mask_id, return_history)
    rec = LeftLayout(trace, relayout) if trace is not None and relayout is not None else trace
    if rec is not None:
        rec.start(x)
    head = (_plan(lens, new, block_size, per_block, stochastic_transfer), max(lens), new)
    step = 0
    with announcing(model, on_step) as announce:
        for blk in range(num_blocks):
            block_mask = torch.zeros((b_sz, block_size), dtype=torch.bool, device=x.device)
            for j in range(b_sz):
                start = lens[j] + blk * block_size
                end = min(start + block_size, lens[j] + new, width)
                if start < end:
                    block_mask[j, : end - start] = x[j, start:end] == mask_id
            schedule = num_transfer_tokens(block_mask, per_block, stochastic_transfer)
            for i in range(schedule.size(1)):
                announce(StepInfo(step, head[0], blk, num_blocks, head[1], head[2], "mdlm"))
                logits = _logits(model, x, attn, unmasked, mask_id, cfg_scale)
                x = _step(
                    x,
                    logits,
                    schedule[:, i],
                    lens,
                    (blk + 1) * block_size,
                    mask_id,
                    temperature,
                    remasking,
                    suppress_tokens,
                    begin_suppress_tokens,
                    right_shift_logits,
                )
                if rec is not None:
                    rec.record(step, x)
                step += 1
    out = relayout(x) if relayout is not None else x
    if return_history:
        assert trace is not None  # trace_for made one
        return out, trace.history
    return out


def _logits(model, x, attn, unmasked, mask_id: int, cfg_scale: float) -> torch.Tensor:
    if cfg_scale <= 0.0:
        return logits_of(model(x, attention_mask=attn))
    un_x = x.clone()
    un_x[unmasked] = mask_id
    both = logits_of(model(torch.cat([x, un_x], dim=0), attention_mask=attn.repeat(2, 1)))
    cond, uncond = torch.chunk(both, 2, dim=0)
    return uncond + (cfg_scale + 1) * (cond - uncond)


def _step(x, logits, counts, lens, window: int, mask_id, temperature, remasking, suppress, begin_suppress, shift):
    """One reference step: propose, score, keep each row's `counts[j]` most confident masked columns."""
    for tok in suppress or ():
        logits[:, :, tok] = -torch.inf
    if shift:
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    x0 = torch.argmax(add_gumbel_noise(logits, temperature), dim=-1)
    for tok in begin_suppress or ():
        logits[:, :, tok] = -torch.inf
    if remasking == "low_confidence":
        x0_p = torch.gather(F.softmax(logits, dim=-1), dim=-1, index=x0.unsqueeze(-1)).squeeze(-1)
    else:
        x0_p = torch.rand((x0.shape[0], x0.shape[1]), device=x0.device)
    for j in range(x.shape[0]):
        x0_p[j, lens[j] + window :] = -torch.inf
    mask_index = x == mask_id
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, -torch.inf)
    take = torch.zeros_like(x0, dtype=torch.bool)
    for j in range(confidence.shape[0]):
        _, idx = torch.topk(confidence[j], k=int(counts[j]))
        take[j, idx] = True
    x = x.clone()
    x[take] = x0[take]
    return x
