"""Dream's reference sampler (`diffusion_generate` / `_sample` of Dream-org/Dream-v0-Instruct-7B's
generation_utils.py) as a plain function over a forward callable.

The callable receives `(x, attention_mask=mask2d_or_None)`: the 0/1 `[B, L]` mask extended over the
response, or None when the prompt has no padding (the reference then uses full attention). Our native
Dream model turns that mask into the reference's position ids (`cumsum - 1`, pads at 1) and 4-D mask.
Logits are shifted one position right, as the reference does: the state at j-1 predicts token j.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributions as dists
import torch.nn.functional as F
from jaxtyping import Float, Int

from .common import StepInfo, announcing, check_prompt, logits_of, resolve_mask_id
from .replay import Replay
from .trace import DecodeTrace, trace_for

ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")


def top_p_logits(logits: Float[torch.Tensor, "n v"], top_p: float) -> Float[torch.Tensor, "n v"]:
    """Keep the smallest prefix of sorted tokens whose mass reaches top_p (always the first one)."""
    sorted_logits, sorted_idx = torch.sort(logits, descending=True)
    cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    drop = cum > top_p
    drop[..., 1:] = drop[..., :-1].clone()
    drop[..., 0] = False
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, sorted_idx, drop)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def top_k_logits(logits: Float[torch.Tensor, "n v"], top_k: int) -> Float[torch.Tensor, "n v"]:
    k = min(top_k, logits.size(-1))
    kth = torch.topk(logits, k)[0][..., -1, None]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


def sample_tokens(
    logits: Float[torch.Tensor, "n v"],
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = None,
    margin_confidence: bool = False,
    neg_entropy: bool = False,
):
    """Token and confidence per row; confidence is p(token), top1-top2 margin, or negative entropy."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_logits(logits, top_p)
    if top_k is not None:
        logits = top_k_logits(logits, top_k)
    probs = torch.softmax(logits, dim=-1)
    if temperature > 0:
        try:
            x0 = dists.Categorical(probs=probs).sample()
            confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
        except Exception:  # the reference falls back to argmax when sampling fails (e.g. NaN probs)
            confidence, x0 = probs.max(dim=-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if margin_confidence:
        top = torch.sort(probs, dim=-1, descending=True)[0]
        confidence = top[:, 0] - top[:, 1]
    if neg_entropy:
        confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    return confidence, x0


def _check(steps: int, max_new_tokens: int, alg: str) -> None:
    if alg not in ALGS:
        raise ValueError(f"unknown alg {alg!r}; use one of {ALGS}")
    if steps <= 0 or max_new_tokens <= 0:
        raise ValueError(f"steps and max_new_tokens must be positive (got {steps}, {max_new_tokens})")


@torch.no_grad()
def dream_generate(
    model: Callable,
    input_ids: Int[torch.Tensor, "b p"],
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 128,
    steps: int = 512,
    eps: float = 1e-3,
    alg: str = "origin",
    alg_temp: float | None = None,
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = None,
    mask_token_id: int | None = None,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    return_history: bool = False,
    trace: DecodeTrace | None = None,
    replay: Replay | None = None,
):
    """Returns prompt + response ids (and the canvas after every step when asked). `trace` records which step
    unmasked each position (`mdm_lens.sampling.trace`); neither changes the tokens."""
    _check(steps, max_new_tokens, alg)
    mask_token_id = resolve_mask_id(model, mask_token_id, 151666)
    check_prompt(input_ids, mask_token_id)
    plen = input_ids.shape[1]
    max_length = plen + max_new_tokens
    x = F.pad(input_ids, (0, max_new_tokens), value=mask_token_id)
    mask2d = None
    if attention_mask is not None and bool(torch.any(attention_mask == 0.0)):
        mask2d = F.pad(attention_mask, (0, max_length - attention_mask.shape[1]), value=1.0)
    timesteps = torch.linspace(1, eps, steps + 1, device=x.device)
    trace = trace_for(trace, mask_token_id, return_history)
    if trace is not None:
        trace.start(x)
    with announcing(model, on_step) as announce:
        for i in range(steps):
            announce(StepInfo(i, steps, 0, 1, plen, max_new_tokens, "dream"))
            mask_index = x == mask_token_id
            logits = logits_of(model(x, attention_mask=mask2d))
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
            mask_logits = logits[mask_index]
            t, s = timesteps[i], timesteps[i + 1]
            if alg == "origin":
                p_transfer = 1 - s / t if i < steps - 1 else 1
                x0 = torch.zeros_like(x[mask_index], dtype=torch.long) + mask_token_id
                pick = torch.rand(*x0.shape, device=x.device) < p_transfer
                if replay is not None:  # schedule replay (mdm_lens.sampling.replay); the draw above stays
                    pick = replay.select(i, x, None)[1][mask_index]
                _, x0[pick] = sample_tokens(mask_logits[pick], temperature=temperature, top_p=top_p, top_k=top_k)
                if replay is not None:  # teacher mode: the schedule's tokens at the picked positions
                    full = x.clone()
                    full[mask_index] = x0
                    x0 = replay.select(i, full)[0][mask_index]
                x[mask_index] = x0.clone()
            else:
                confidence, x0 = sample_tokens(
                    mask_logits,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=top_k,
                    margin_confidence=alg == "topk_margin",
                    neg_entropy=alg == "entropy",
                )
                num_mask = mask_index.sum() / mask_index.shape[0]
                n_transfer = int(num_mask * (1 - s / t)) if i < steps - 1 else int(num_mask)
                full_conf = torch.full_like(x, -torch.inf, dtype=logits.dtype)
                full_conf[mask_index] = confidence
                if replay is not None:  # schedule replay: draw as the sampler would, write the schedule's
                    if n_transfer > 0 and alg_temp is not None and alg_temp != 0:
                        torch.multinomial(F.softmax(full_conf / alg_temp, dim=-1), num_samples=n_transfer)
                    x_ = torch.full_like(x, mask_token_id)
                    x_[mask_index] = x0.clone()
                    x_, take = replay.select(i, x_, None)
                    x[take] = x_[take]
                elif n_transfer > 0:
                    if alg_temp is None or alg_temp == 0:
                        _, transfer = torch.topk(full_conf, n_transfer)
                    else:
                        transfer = torch.multinomial(F.softmax(full_conf / alg_temp, dim=-1), num_samples=n_transfer)
                    x_ = torch.zeros_like(x, dtype=torch.long) + mask_token_id
                    x_[mask_index] = x0.clone()
                    rows = torch.arange(x.size(0), device=x.device).unsqueeze(1).expand_as(transfer)
                    x[rows, transfer] = x_[rows, transfer]
            if trace is not None:
                trace.record(i, x)
    return (x, trace.history) if return_history else x
