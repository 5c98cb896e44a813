"""One hooked mixture-of-experts block for every MoE family (LLaDA2.x, LLaDA-MoE), with pluggable routing.

The forward is split where a researcher wants to look or edit, and every piece is a HookPoint whose returned
tensor is the one the forward uses (`mdm_lens.sites.MOE_ROLES`):

    logits  = gate(h)                        -> mlp.hook_router_logits   [batch, pos, n_experts]
    indices = router.select(logits)          -> mlp.hook_expert_indices  [batch, pos, top_k]  int64
    weights = router.weights(logits, idx)    -> mlp.hook_expert_weights  [batch, pos, top_k]
    outs    = expert_i(h) for chosen i       -> mlp.hook_expert_out      [batch, pos, top_k, d_model]
    shared  = shared_experts(h)              -> mlp.hook_shared_out      [batch, pos, d_model]
    out     = router.combine(outs, weights) + shared                     (the block's `hook_mlp_out`)

Routing edits: a router-logits hook that writes -inf bans an expert (never chosen), +inf forces it (always
chosen, whatever the scoring function or expert bias); an indices hook replaces the choice outright (weights are
then recomputed for the new ids); a weights hook re-weights. WHY the infinities are read explicitly: with sigmoid
scores plus an expert bias (LLaDA2) a large finite logit does not guarantee selection, and softmax of +inf is NaN.
Finite logits (every unedited forward) route exactly as the reference code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn

from ..hook_points import HookPoint


class ExpertMLP(nn.Module):
    """SwiGLU MLP with the hub's names (`gate_proj`, `up_proj`, `down_proj`): a routed, shared or dense FFN."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Float[torch.Tensor, "*b d"]) -> Float[torch.Tensor, "*b d"]:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DenseMLP(ExpertMLP):
    """A dense layer's FFN (LLaDA2's first_k_dense_replace, LLaDA-MoE's moe_layer_freq 0) with TL's MLP sites."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__(d_model, hidden)
        self.act = nn.SiLU()
        self.hook_post = HookPoint()

    def forward(self, x: Float[torch.Tensor, "*b d"]) -> Float[torch.Tensor, "*b d"]:
        return self.down_proj(self.hook_post(self.act(self.gate_proj(x)) * self.up_proj(x)))


@runtime_checkable
class Router(Protocol):
    """How a family turns gate logits into choices and combine weights, and sums the weighted experts."""

    @property
    def top_k(self) -> int: ...

    def select(self, logits: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor: ...

    def weights(self, logits: torch.Tensor, bias: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor: ...

    def combine(self, outs: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor: ...


def _honour_infinities(logits: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Selection scores with banned (-inf logit) experts at -inf and forced (+inf) ones at +inf."""
    return sel.masked_fill(logits == float("-inf"), float("-inf")).masked_fill(logits == float("inf"), float("inf"))


@dataclass(frozen=True)
class SoftmaxTopK:
    """LLaDA-MoE: softmax over the gate logits in float32, plus the expert bias where the config enables it,
    top-k of that; the weights are the chosen (biased) probabilities, not renormalised (the reference fixes
    norm_topk_prob = False), cast to the hidden dtype; experts are summed in expert-id order (index_add_)."""

    top_k: int

    def _probs(self, logits: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        finite = logits.masked_fill(logits == float("inf"), torch.finfo(logits.dtype).max)
        probs = F.softmax(finite, dim=-1, dtype=torch.float)
        return probs + bias if bias is not None else probs

    def select(self, logits: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        sel = self._probs(logits, bias)
        return torch.topk(_honour_infinities(logits, sel), self.top_k, dim=-1)[1]

    def weights(self, logits: torch.Tensor, bias: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
        return torch.gather(self._probs(logits, bias), -1, idx)

    def combine(self, outs: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        weighted = outs * weights.to(outs.dtype)[..., None]
        order = idx.argsort(dim=-1)[..., None].expand_as(weighted)
        weighted = weighted.gather(-2, order)
        acc = torch.zeros_like(weighted[..., 0, :])
        for j in range(weighted.shape[-2]):  # 0 + a + b + ...: the reference's accumulation, bit for bit
            acc = acc + weighted[..., j, :]
        return acc


@dataclass(frozen=True)
class GroupedSigmoid:
    """LLaDA2.x: sigmoid scores in float32; choice = group-limited top-k of scores + expert bias (experts in
    `n_group` groups, a group scored by its two best, `topk_group` groups kept); weights = the chosen *unbiased*
    scores, normalised to sum 1 when top_k > 1, times `routed_scaling_factor`, kept in float32; the weighted sum
    is taken in float32 and cast back (the reference's `moe_infer`)."""

    top_k: int
    n_group: int
    topk_group: int
    scale: float

    def select(self, logits: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        scores = torch.sigmoid(logits.float())
        sel = scores + bias if bias is not None else scores
        sel = _honour_infinities(logits, sel)
        lead = sel.shape[:-1]
        grouped = sel.reshape(*lead, self.n_group, -1)
        group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False)[1]
        keep = torch.zeros_like(group_scores).scatter_(-1, group_idx, 1).bool()
        keep = keep[..., None].expand_as(grouped).reshape(sel.shape)
        return torch.topk(sel.masked_fill(~keep, float("-inf")), k=self.top_k, dim=-1)[1]

    def weights(self, logits: torch.Tensor, bias: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
        chosen = torch.gather(torch.sigmoid(logits.float()), -1, idx)
        if self.top_k > 1:
            chosen = chosen / (chosen.sum(dim=-1, keepdim=True) + 1e-20)
        return chosen * self.scale

    def combine(self, outs: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return (outs.float() * weights.float()[..., None]).sum(dim=-2).to(outs.dtype)


class MoEBlock(nn.Module):
    """Routed experts (+ optional shared experts) with the MoE hook sites; state-dict names are the hub's:
    `gate.weight`, `experts.{i}.{gate,up,down}_proj.weight`, the expert bias buffer at `gate.expert_bias`
    (LLaDA2) or `expert_bias` (LLaDA-MoE), shared experts at `shared_experts` (LLaDA2). A family whose shared
    expert lives elsewhere (LLaDA-MoE: on the decoder layer) passes it to `forward`.

    `gate_float32`: the gate runs in float32 on float32 copies (LLaDA2) instead of in the model dtype."""

    def __init__(
        self,
        d_model: int,
        n_experts: int,
        expert_hidden: int,
        router: Router,
        *,
        shared_hidden: int | None = None,
        expert_bias: str | None = None,
        gate_float32: bool = False,
    ):
        super().__init__()
        self.n_experts, self.router, self.gate_float32 = n_experts, router, gate_float32
        self.gate = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(ExpertMLP(d_model, expert_hidden) for _ in range(n_experts))
        self.shared_experts = ExpertMLP(d_model, shared_hidden) if shared_hidden is not None else None
        self._bias_owner = expert_bias
        if expert_bias == "gate":
            self.gate.register_buffer("expert_bias", torch.zeros(n_experts))
        elif expert_bias == "block":
            self.register_buffer("expert_bias", torch.zeros(n_experts))
        elif expert_bias is not None:
            raise ValueError(f"expert_bias={expert_bias!r}: use 'gate', 'block' or None")
        self.hook_router_logits = HookPoint()
        self.hook_expert_indices = HookPoint()
        self.hook_expert_weights = HookPoint()
        self.hook_expert_out = HookPoint()
        self.hook_shared_out = HookPoint()

    @property
    def bias(self) -> torch.Tensor | None:
        if self._bias_owner == "gate":
            return self.gate.get_buffer("expert_bias")
        return self.get_buffer("expert_bias") if self._bias_owner == "block" else None

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.gate_float32:
            return F.linear(h.float(), self.gate.weight.float())
        return self.gate(h)

    def _check_indices(self, idx: torch.Tensor, like: torch.Tensor) -> None:
        if idx.shape != like.shape or idx.dtype != torch.int64:
            raise ValueError(
                f"hook_expert_indices returned {tuple(idx.shape)} {idx.dtype}; it must stay "
                f"{tuple(like.shape)} int64 (edit ids in place or return a tensor of the same layout)"
            )
        if bool(((idx < 0) | (idx >= self.n_experts)).any()):
            raise ValueError(f"hook_expert_indices returned expert ids outside 0..{self.n_experts - 1}")

    def run_experts(self, h: Float[torch.Tensor, "n d"], idx: Int[torch.Tensor, "n k"]) -> Float[torch.Tensor, "n k d"]:
        """Each chosen expert's output per (token, slot): one batched call per expert that has tokens. One stable
        sort groups the (token, slot) pairs by expert (tokens ascending within an expert, as the reference
        batches them); one host sync reads the group sizes."""
        k, d = idx.shape[-1], h.shape[-1]
        flat = idx.reshape(-1)
        order = flat.argsort(stable=True)
        sizes = torch.bincount(flat, minlength=self.n_experts).tolist()
        out = h.new_zeros(flat.numel(), d)
        start = 0
        for e, n in enumerate(sizes):
            if n:
                pairs = order[start : start + n]
                out[pairs] = self.experts[e](h[pairs // k])
                start += n
        return out.view(*idx.shape, d)

    def forward(self, h: Float[torch.Tensor, "b p d"], shared: nn.Module | None = None) -> Float[torch.Tensor, "b p d"]:
        b, p, d = h.shape
        raw = self._logits(h)
        logits = self.hook_router_logits(raw)
        bias = self.bias
        chosen = self.router.select(logits, bias)
        idx = self.hook_expert_indices(chosen)
        if idx is not chosen:
            self._check_indices(idx, chosen)
        w = self.hook_expert_weights(self.router.weights(logits, bias, idx))
        flat = self.run_experts(h.reshape(b * p, d), idx.reshape(b * p, -1))
        outs = self.hook_expert_out(flat.view(b, p, -1, d))
        y = self.router.combine(outs, w, idx)
        shared = self.shared_experts if shared is None else shared
        if shared is not None:
            y = y + self.hook_shared_out(shared(h))
        return y
