"""Pieces shared by the native families: RMSNorm, rotary helpers, attention, the site table."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn

from ..hook_points import HookPoint
from ..sites import HEAD_ORDER, LAYER_ORDER, ROLES, TAIL_ORDER, aliases_of, get_act_name
from .base import Site


class RMSNorm(nn.Module):
    """RMSNorm as LLaDA and Dream both write it: normalise in float32, cast back, then scale.

    The cast back happens *before* the weight multiply (both references do so), which matters in bf16.
    Two parameter-free HookPoints carry TransformerLens' norm tensors: `hook_scale` = sqrt(mean(x^2) + eps)
    `[*batch, 1]` in float32, `hook_normalized` = x / scale WITHOUT the weight. The multiply keeps the
    reference's `x * rsqrt(.)` (logits bit-equal) unless a hook replaces the scale; then it divides by it.
    """

    def __init__(self, size: int, eps: float, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size)) if bias else None
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Float[torch.Tensor, "*batch d"]) -> Float[torch.Tensor, "*batch d"]:
        dtype = x.dtype
        h = x.float()
        var = h.pow(2).mean(-1, keepdim=True) + self.eps
        scale = var.sqrt()
        new = self.hook_scale(scale)
        h = h * torch.rsqrt(var) if new is scale else h / new
        h = self.weight * self.hook_normalized(h.to(dtype))
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


def site_table(dims: dict, paths: dict[str, str | tuple[str, str]], linears: dict[str, str] | None = None
               ) -> list[Site]:
    """The canonical site table of a model: `paths` maps each role it has (`mdm_lens.sites.ROLES`) to the module
    whose output carries the tensor (`{l}` = layer), or to `(path, "input")` for a module's first input;
    `linears` maps roles to the nn.Linear / nn.Embedding writing them (`{l}` too). `dims` is the family's
    `FamilySpec.dims(model)` (sizes resolve each role's dims into `Site.shape`). Order: embeddings, then per
    layer as the forward computes, then the final norm and logits; names, aliases and shapes come from ROLES."""
    unknown = sorted(set(paths) - set(ROLES))
    if unknown:
        raise ValueError(f"site roles {unknown} are not in mdm_lens.sites.ROLES; add them there first")
    linears = linears or {}
    n = dims["n_layers"]
    sizes = {k: dims[k] for k in ("d_model", "d_mlp", "n_heads", "d_head", "d_vocab")}
    sizes.update(one=1, n_kv_heads=dims.get("n_kv_heads") or dims["n_heads"])
    present = set(paths)

    def make(role: str, layer: int | None) -> Site:
        where = paths[role]
        path, kind = (where, "output") if isinstance(where, str) else where
        shape = tuple(sizes.get(d, d) for d in ROLES[role].dims)
        lin = linears.get(role)
        return Site(get_act_name(role, layer), path.format(l=layer), kind, layer,
                    shape[-1] if isinstance(shape[-1], int) else 0,
                    lin.format(l=layer) if lin else None, role, aliases_of(role, layer, n, present), shape)

    sites = [make(r, None) for r in HEAD_ORDER if r in paths]
    sites += [make(r, layer) for layer in range(n) for r in LAYER_ORDER if r in paths]
    return sites + [make(r, None) for r in TAIL_ORDER if r in paths]
