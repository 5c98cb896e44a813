"""Attention pieces the MoE families share (LLaDA2.x, LLaDA-MoE): partial rotary in the model dtype, attention
masks as their reference code builds them, and the mixed dense / MoE site table."""

from __future__ import annotations

from itertools import takewhile
from typing import Any

import torch
from jaxtyping import Float

from ._layers import rope_angles, rotate_half, site_table
from .base import Site


def partial_rope(
    positions: torch.Tensor, rope_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin `[b or 1, 1, p, rope_dim]` computed in float32 and cast to the model dtype (as transformers'
    rotary embedding returns them, so bfloat16 models rotate in bfloat16 like the reference)."""
    ang = rope_angles(positions, rope_dim, theta)
    if ang.dim() == 2:
        ang = ang[None]
    return ang.cos().to(dtype)[:, None], ang.sin().to(dtype)[:, None]


def apply_partial_rope(
    x: Float[torch.Tensor, "b h p hd"], cos: torch.Tensor, sin: torch.Tensor
) -> Float[torch.Tensor, "b h p hd"]:
    """Rotate the first `cos.shape[-1]` dims of each head (`rotate_half` convention), pass the rest through."""
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    return torch.cat([rot * cos + rotate_half(rot) * sin, rest], dim=-1)


def attention_bias(
    attention_mask: torch.Tensor | None,
    b: int,
    p: int,
    dtype: torch.dtype,
    *,
    drop_all_ones: bool,
) -> torch.Tensor | None:
    """The additive `[b or 1, 1, p, n]` mask SDPA gets, from what a caller passes:

    * None: full bidirectional attention;
    * `[b, n]` 0/1 padding mask: padded *keys* are hidden (finfo(dtype).min added), queries keep attending;
      `drop_all_ones` (LLaDA2: transformers' helper returns no mask then) skips a mask without a 0;
    * `[b or 1, 1, p, n]` 4D mask (LLaDA2's block-causal sampler mask): bool True = attend (converted to
      0 / finfo.min as the reference does), float = additive, cast to the model dtype; keys beyond n dropped.
    A query row that can see no key would give NaN: refused, naming the row."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 2:
        if attention_mask.shape[0] != b:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; a padding mask must be [{b}, n]")
        if drop_all_ones and bool((attention_mask != 0).all()):
            return None
        keep = attention_mask[:, None, None, :].to(torch.bool)
        bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
        return bias.expand(b, 1, p, attention_mask.shape[1])
    if attention_mask.dim() != 4 or attention_mask.shape[-2] != p or attention_mask.shape[0] not in (1, b):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; pass a [{b}, n] 0/1 padding mask or a 4D "
            f"[{b} or 1, 1, {p}, n >= {p}] mask (bool: True attends; float: added to the scores)"
        )
    if attention_mask.dtype == torch.bool:
        mask = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
        mask = mask.masked_fill(~attention_mask, torch.finfo(dtype).min)
    else:
        mask = attention_mask.to(dtype)
        dead = (mask == float("-inf")).all(-1)
        if bool(dead.any()):
            row = dead.nonzero()[0].tolist()
            raise ValueError(
                f"attention_mask hides every key from query row {row} (all -inf): attention there is NaN. "
                "Let each query see at least itself (a block-causal mask keeps its own block visible)"
            )
    return mask


def mixed_site_table(
    dims: dict[str, Any],
    common: dict[str, str | tuple[str, str]],
    dense: dict[str, str],
    moe: dict[str, str],
    linears: dict[str, str],
    dense_linears: dict[str, str],
    moe_layers: set[int],
) -> list[Site]:
    """The site table of a model whose layers are dense or MoE: `common` sites everywhere, `dense` / `moe`
    ones (and their writing linears) on their layers only, in the usual order."""
    a = site_table(dims, {**common, **dense}, {**linears, **dense_linears})
    m = site_table(dims, {**common, **moe}, linears)
    head = list(takewhile(lambda s: s.layer is None, a))
    tail = list(takewhile(lambda s: s.layer is None, reversed(a)))[::-1]
    body = [s for layer in range(dims["n_layers"]) for s in (m if layer in moe_layers else a) if s.layer == layer]
    return head + body + tail
