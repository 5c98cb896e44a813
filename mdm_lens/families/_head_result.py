"""The attention output projection with TransformerLens's `hook_result`: each head's write into the residual
stream, `z[:, :, h] @ W_O[h]` `[batch, pos, head_index, d_model]`, before the heads are summed.

TL computes it only when `cfg.use_attn_result` is set, because it costs `n_heads` times the memory of the
attention output. Here the projection takes the per-head route only while `hook_result` is hooked (a torch
hook: `model.hooks`, `add_hook`, a cache that names it) or `use_attn_result` is set (`model.set_use_attn_result`,
for tools whose module wrappers are not torch hooks, e.g. nnsight); otherwise it is the plain `nn.Linear`, so an
unhooked forward is unchanged bit for bit. On the per-head route the output is the sum over heads of the (possibly
edited) results plus the bias, so an edit at `hook_result` reaches `hook_attn_out` and everything after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn

from ..hook_points import HookPoint


class HeadResultLinear(nn.Linear):
    """An `nn.Linear` (same parameters, same state-dict keys) from the concatenated heads `[.., n_heads *
    d_head]` to `d_model`, with a `hook_result` HookPoint on the per-head terms."""

    def __init__(self, in_features: int, out_features: int, bias: bool, n_heads: int):
        super().__init__(in_features, out_features, bias=bias)
        if in_features % n_heads:
            raise ValueError(f"in_features={in_features} is not a multiple of n_heads={n_heads}")
        self.n_heads = n_heads
        self.use_attn_result = False
        self.hook_result = HookPoint()

    @property
    def per_head(self) -> bool:
        """Whether this forward materialises the per-head results."""
        return self.use_attn_result or self.hook_result.hooked

    def forward(self, z: Float[torch.Tensor, "*b hd_all"]) -> Float[torch.Tensor, "*b d"]:
        if not self.per_head:
            return F.linear(z, self.weight, self.bias)
        heads = z.unflatten(-1, (self.n_heads, -1))  # [*b, h, d_head]
        w_o = self.weight.t().unflatten(0, (self.n_heads, -1))  # [h, d_head, d_model] = TL's W_O[layer]
        result = self.hook_result(torch.einsum("...hd,hdm->...hm", heads, w_o.to(heads.dtype)))
        out = result.sum(-2)
        return out + self.bias if self.bias is not None else out


def set_use_attn_result(root: nn.Module, use: bool) -> None:
    """TL's `set_use_attn_result`: every attention output projection under `root` computes per-head results
    (and fires `hook_result`) whether hooked or not."""
    if not isinstance(use, bool):
        raise TypeError(f"set_use_attn_result(use={use!r}): pass True or False")
    for m in root.modules():
        if isinstance(m, HeadResultLinear):
            m.use_attn_result = use
