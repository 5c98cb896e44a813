"""Pieces shared by the native families: RMSNorm, rotary helpers, attention, the site table."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn

from ..sites import LAYER_ROLES, get_act_name
from .base import Site


class RMSNorm(nn.Module):
    """RMSNorm as LLaDA and Dream both write it: normalise in float32, cast back, then scale.

    The cast back happens *before* the weight multiply (both references do so), which matters in bf16.
    """

    def __init__(self, size: int, eps: float, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size)) if bias else None

    def forward(self, x: Float[torch.Tensor, "*batch d"]) -> Float[torch.Tensor, "*batch d"]:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        h = self.weight * h.to(dtype)
        return h + self.bias if self.bias is not None else h


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Angles [..., head_dim] in float32 for integer positions; both halves repeat the frequencies."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float) / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    return torch.cat((freqs, freqs), dim=-1)


def rotate_half(x: Float[torch.Tensor, "*b hd"]) -> Float[torch.Tensor, "*b hd"]:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: Float[torch.Tensor, "b h p hd"], cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`x * cos + rotate_half(x) * sin`; cos/sin broadcast as [b or 1, 1, p, hd]."""
    return x * cos + rotate_half(x) * sin


def attend(q: Float[torch.Tensor, "b h p hd"], k: Float[torch.Tensor, "b kv p hd"],
           v: Float[torch.Tensor, "b kv p hd"], mask: torch.Tensor | None) -> Float[torch.Tensor, "b p hd_all"]:
    """Bidirectional SDPA (never causal); kv heads serve consecutive query heads (repeat_interleave)."""
    h, kv = q.shape[1], k.shape[1]
    if kv != h:
        k = k.repeat_interleave(h // kv, dim=1)
        v = v.repeat_interleave(h // kv, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
    b, _, p, hd = out.shape
    return out.transpose(1, 2).reshape(b, p, h * hd)


def standard_sites(n_layers: int, d_model: int, d_mlp: int, d_vocab: int, *, embed: str, block: str,
                   rel: dict[str, str], ln_final: str, logits: str, logits_linear: str | None) -> list[Site]:
    """The canonical site table. `block` is a template with `{l}`; `rel` maps each per-layer role
    (`mdm_lens.sites.LAYER_ROLES`) to its module path relative to the block; nn.Linear writers are marked
    as `linear`."""
    linear_roles = {"attn_out", "mlp_pre", "mlp_pre_linear", "mlp_out"}
    width = {"resid_pre": d_model, "attn_out": d_model, "resid_mid": d_model, "mlp_pre": d_mlp,
             "mlp_pre_linear": d_mlp, "mlp_post": d_mlp, "mlp_out": d_model, "resid_post": d_model}
    sites = [Site(get_act_name("embed"), embed, "output", None, d_model, embed, "embed")]
    for layer in range(n_layers):
        base = block.format(l=layer)
        for role in LAYER_ROLES:
            path = f"{base}.{rel[role]}"
            sites.append(Site(get_act_name(role, layer), path, "output", layer, width[role],
                              path if role in linear_roles else None, role))
    sites.append(Site(get_act_name("ln_final"), ln_final, "output", None, d_model, None, "ln_final"))
    sites.append(Site(get_act_name("logits"), logits, "output", None, d_vocab, logits_linear, "logits"))
    return sites
