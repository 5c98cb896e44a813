"""Pieces shared by the native families: RMSNorm, rotary helpers, attention, the site table."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterable, Iterator

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


class AttentionHooks(nn.Module):
    """The HookPoints of one attention layer, in TransformerLens' layouts, and its eager switch (no parameters).

    q / k / v `[batch, pos, heads, d_head]` are the projections before rotary (k / v keep the kv-head count under
    GQA), rot_q / rot_k the same after rotary (`rotary=True`: LLaDA; TL's Dream adapter has none), z
    `[batch, pos, n_heads, d_head]` the per-head mix before the output projection. Those exist on every path.
    scores / pattern `[batch, n_heads, query, key]` only exist on the eager path, which a layer takes only while
    one of them is hooked (or `force_eager` is set: `eager_attention`, e.g. for nnsight, whose module wrappers are
    not torch hooks):
    an unhooked layer keeps SDPA. WHY per layer: caching one layer's pattern must not slow the other layers.
    In a KV-cached forward every hook sees the computed columns only: q / k / v / rot / z and the query axis of
    scores / pattern cover them; the key axis covers every key column (cached and computed).
    """

    def __init__(self, rotary: bool):
        super().__init__()
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        if rotary:
            self.hook_rot_q, self.hook_rot_k = HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()
        self.force_eager = False

    @property
    def eager(self) -> bool:
        return self.force_eager or self.hook_attn_scores.hooked or self.hook_pattern.hooked

    @staticmethod
    def heads(hook: HookPoint, x: Float[torch.Tensor, "b h p hd"]) -> Float[torch.Tensor, "b h p hd"]:
        """Fire `hook` on TL's layout `[b, p, h, hd]` (a view: no copy, same numbers); hand back `[b, h, p, hd]`."""
        return hook(x.transpose(1, 2)).transpose(1, 2)


@contextmanager
def eager_attention(root: nn.Module, layers: Iterable[int] | None = None) -> Iterator[None]:
    """Inside the block the chosen layers (default all) take the eager path whether hooked or not: for tools
    that read `hook_attn_scores` / `hook_pattern` without torch hooks (nnsight's module wrappers), which the
    per-layer switch cannot see. `root`: a native model or the HookedMDM around it."""
    mods = [m for m in root.modules() if isinstance(m, AttentionHooks)]
    idx = range(len(mods)) if layers is None else [int(i) for i in layers]
    bad = [i for i in idx if not 0 <= i < len(mods)]
    if bad:
        raise ValueError(f"layers {bad} out of range: this model has {len(mods)} attention layers (0..{len(mods) - 1})")
    chosen = [mods[i] for i in idx]
    before = [m.force_eager for m in chosen]
    try:
        for m in chosen:
            m.force_eager = True
        yield
    finally:
        for m, old in zip(chosen, before):
            m.force_eager = old


def _eager(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, hooks: AttentionHooks
) -> Float[torch.Tensor, "b h p hd"]:
    """SDPA written out so scores and pattern can be read and replaced; float32 scores and softmax.

    Masks mean what they mean to SDPA: a bool mask keeps its True keys (the others get float32's min, as TL's
    LLaDA scores), a float mask is added; a query row with no key left (Dream's padded queries) gets a zero
    pattern row and so a zero z, as SDPA returns there."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    dead = None
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
            dead = ~mask.any(-1, keepdim=True)
        else:
            scores = scores + mask.float()
    pattern = torch.softmax(hooks.hook_attn_scores(scores), dim=-1)
    if dead is not None:
        pattern = pattern.masked_fill(dead, 0.0)
    return torch.matmul(hooks.hook_pattern(pattern).to(v.dtype), v)


def attend(
    q: Float[torch.Tensor, "b h p hd"],
    k: Float[torch.Tensor, "b kv n hd"],
    v: Float[torch.Tensor, "b kv n hd"],
    mask: torch.Tensor | None,
    hooks: AttentionHooks | None = None,
) -> Float[torch.Tensor, "b p hd_all"]:
    """Bidirectional attention (never causal); kv heads serve consecutive query heads (repeat_interleave).

    SDPA unless `hooks.eager` (a hook on scores / pattern); `hooks.hook_z` fires on `[b, p, h, hd]` either way."""
    h, kv = q.shape[1], k.shape[1]
    if kv != h:
        k = k.repeat_interleave(h // kv, dim=1)
        v = v.repeat_interleave(h // kv, dim=1)
    if hooks is not None and hooks.eager:
        out = _eager(q, k, v, mask, hooks)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
    b, _, p, hd = out.shape
    z = out.transpose(1, 2)
    if hooks is not None:
        z = hooks.hook_z(z)
    return z.reshape(b, p, h * hd)


def site_table(
    dims: dict, paths: dict[str, str | tuple[str, str]], linears: dict[str, str] | None = None
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
    sizes.update({k: dims[k] for k in ("n_experts", "top_k") if k in dims})  # MoE families
    present = set(paths)

    def make(role: str, layer: int | None) -> Site:
        where = paths[role]
        path, kind = (where, "output") if isinstance(where, str) else where
        shape = tuple(sizes.get(d, d) for d in ROLES[role].dims)
        lin = linears.get(role)
        return Site(
            get_act_name(role, layer),
            path.format(l=layer),
            kind,
            layer,
            shape[-1] if isinstance(shape[-1], int) else 0,
            lin.format(l=layer) if lin else None,
            role,
            aliases_of(role, layer, n, present),
            shape,
        )

    sites = [make(r, None) for r in HEAD_ORDER if r in paths]
    sites += [make(r, layer) for layer in range(n) for r in LAYER_ORDER if r in paths]
    return sites + [make(r, None) for r in TAIL_ORDER if r in paths]
