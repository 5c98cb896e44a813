"""Attention pieces the MoE families share (LLaDA2.x, LLaDA-MoE): partial rotary in the model dtype, attention
masks as their reference code builds them, and the mixed dense / MoE site table."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class MoELayout:
    """Where an MoE family keeps things (module paths under the LM wrapper; `{l}` = layer): the embedding, the
    attention module and its output linear, the shared experts' down projection (None: no shared experts)."""

    embed: str
    attn: str
    attn_out: str
    shared_down: str | None
    n_layers: int
    moe_layers: frozenset[int]
    n_experts: int
    tied: bool


def moe_site_table(dims: dict[str, Any], lay: MoELayout) -> list[Site]:
    """The site table of a model whose layers are dense (TL's MLP sites) or MoE (`sites.MOE_ROLES`, and
    `mlp_out` = the MoE block's output, which no single linear writes), in the usual order."""
    b, a = "model.layers.{l}", f"model.layers.{{l}}.{lay.attn}"
    common: dict[str, str | tuple[str, str]] = {
        "embed_in": (lay.embed, "input"),
        "embed": lay.embed,
        "resid_pre": f"{b}.hook_resid_pre",
        "ln1_scale": f"{b}.input_layernorm.hook_scale",
        "ln1_normalized": f"{b}.input_layernorm.hook_normalized",
        "ln1_out": f"{b}.input_layernorm",
        **{r: f"{a}.hooks.hook_{r}" for r in ("q", "k", "v", "rot_q", "rot_k", "attn_scores", "pattern", "z")},
        "attn_out": f"{a}.{lay.attn_out}",
        "resid_mid": f"{b}.hook_resid_mid",
        "ln2_scale": f"{b}.post_attention_layernorm.hook_scale",
        "ln2_normalized": f"{b}.post_attention_layernorm.hook_normalized",
        "ln2_out": f"{b}.post_attention_layernorm",
        "resid_post": f"{b}.hook_resid_post",
        "scale": "model.norm.hook_scale",
        "normalized": "model.norm.hook_normalized",
        "ln_final": "model.norm",
        "logits": "hook_logits",
    }
    linears = {"embed": lay.embed, "attn_out": f"{a}.{lay.attn_out}", **({} if lay.tied else {"logits": "lm_head"})}
    dense_linears = {
        "mlp_pre": f"{b}.mlp.gate_proj",
        "mlp_pre_linear": f"{b}.mlp.up_proj",
        "mlp_out": f"{b}.mlp.down_proj",
    }
    dense = {**dense_linears, "mlp_act": f"{b}.mlp.act", "mlp_post": f"{b}.mlp.hook_post"}
    moe = {r: f"{b}.mlp.hook_{r}" for r in ("router_logits", "expert_indices", "expert_weights", "expert_out")}
    moe_linears = {}
    if lay.shared_down is not None:
        moe["shared_out"] = f"{b}.mlp.hook_shared_out"
        moe_linears["shared_out"] = lay.shared_down
    moe["mlp_out"] = f"{b}.mlp"
    t_dense = site_table(dims, {**common, **dense}, {**linears, **dense_linears})
    t_moe = site_table(dims, {**common, **moe}, {**linears, **moe_linears})
    head = list(takewhile(lambda s: s.layer is None, t_dense))
    tail = list(takewhile(lambda s: s.layer is None, reversed(t_dense)))[::-1]
    body = [s for i in range(lay.n_layers) for s in (t_moe if i in lay.moe_layers else t_dense) if s.layer == i]
    return head + body + tail


def moe_writers_of(lay: MoELayout, layer: int) -> tuple[list[str], list[str]]:
    """The down projections writing MoE layer `layer`'s output: every routed expert's, the shared experts'."""
    if layer not in lay.moe_layers:
        return [], []
    routed = [f"model.layers.{layer}.mlp.experts.{e}.down_proj" for e in range(lay.n_experts)]
    return routed, ([lay.shared_down.format(l=layer)] if lay.shared_down is not None else [])


def moe_residual_writers(lay: MoELayout) -> list[str]:
    """Layers writing the residual stream: embeddings, attention out, every MLP down projection (dense; each
    routed expert and the shared experts on MoE layers), for folding a directional ablation."""
    out = [lay.embed]
    for i in range(lay.n_layers):
        out.append(f"model.layers.{i}.{lay.attn}.{lay.attn_out}")
        routed, shared = moe_writers_of(lay, i)
        out += routed + shared if i in lay.moe_layers else [f"model.layers.{i}.mlp.down_proj"]
    return out
