"""LLaDA-MoE (inclusionAI LLaDA-MoE-7B-A1B Base / Instruct: 7B total, 1.4B active), native in torch.

Behaviour follows `modeling_lladamoe.py` as mirrored in ZHZisZZ/dllm (`dllm/pipelines/llada/models/`), SDPA
path; state-dict keys are the hub checkpoint's, so `trust_remote_code` is never needed:

* OLMoE-style block: `x + o_proj(attn(input_layernorm(x)))`, then `+ mlp(h) + shared_expert(h)`,
  h = post_attention_layernorm(x); `moe_layer_freq[l] == 0` makes layer l dense (`dense_intermediate_size`);
* routing (`mdm_lens.families._moe.SoftmaxTopK`): softmax of the gate logits in float32, plus the expert bias
  when `moe_router_enable_expert_bias`, top-k; weights are the chosen values un-normalised (the reference fixes
  `norm_topk_prob = False` whatever the config says, and reads no `moe_router_score_function`);
* attention: separate q/k/v/o projections, QK-norm per head when `qk_layernorm`, `clip_qkv` clamping, partial
  rotary (cos / sin in the model dtype), GQA, bidirectional; a `[B, N]` 0/1 mask hides padded keys;
* decoding is LLaDA's (`generate.py`): `model.generate` runs `mdm_lens.sampling.llada_generate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, cast

import torch
from jaxtyping import Float, Int
from torch import nn

from ..hook_points import HookPoint
from . import llada as _llada
from ._layers import AttentionHooks, RMSNorm, attend
from ._moe import DenseMLP, ExpertMLP, MoEBlock, SoftmaxTopK
from ._moe_attn import (
    MoELayout,
    apply_partial_rope,
    attention_bias,
    moe_residual_writers,
    moe_site_table,
    moe_writers_of,
    partial_rope,
)
from .base import FamilySpec, Site

MASK_ID = 156895  # "<|mask|>" of inclusionAI/LLaDA-MoE-7B-A1B's tokenizer


@dataclass
class LLaDAMoEConfig:
    """The config.json fields the forward needs (names as in configuration_lladamoe.py)."""

    vocab_size: int = 157184
    hidden_size: int = 2048
    dense_intermediate_size: int | None = None
    expert_intermediate_size: int = 1024
    shared_expert_intermediate_size: int | None = None
    num_hidden_layers: int = 16
    num_attention_heads: int = 16
    num_key_value_heads: int | None = None
    rms_norm_eps: float = 1e-5
    rope_theta: float = 50000.0
    rope_scaling: dict | None = None
    partial_rotary_factor: float = 1.0
    attention_bias: bool = False
    clip_qkv: float | None = None
    num_experts: int = 64
    num_experts_per_tok: int = 8
    qk_layernorm: bool = True
    moe_layer_freq: list[int] = field(default_factory=list)
    moe_router_enable_expert_bias: bool | None = None
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096
    mask_token_id: int = MASK_ID

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "LLaDAMoEConfig":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in cfg.items() if k in known})
        out.check()
        return out

    def check(self) -> None:
        """Refuse what the native forward does not compute, naming the value and the fix."""
        if self.rope_scaling not in (None, {}) and self.rope_scaling.get("rope_type", "default") != "default":
            raise NotImplementedError(f"LLaDA-MoE rope_scaling={self.rope_scaling} is not supported (only default)")
        if not 0 < self.partial_rotary_factor <= 1:
            raise ValueError(f"partial_rotary_factor={self.partial_rotary_factor} must lie in (0, 1]")
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.kv_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size}, num_attention_heads={self.num_attention_heads}, "
                f"num_key_value_heads={self.kv_heads} incompatible"
            )
        if len(self.moe_layer_freq) != self.num_hidden_layers:
            raise ValueError(
                f"moe_layer_freq has {len(self.moe_layer_freq)} entries; it needs one per layer "
                f"({self.num_hidden_layers}: 0 = dense, 1 = MoE)"
            )
        if any(f == 0 for f in self.moe_layer_freq) and self.dense_intermediate_size is None:
            raise ValueError("moe_layer_freq marks dense layers but dense_intermediate_size is not set")
        if not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError(f"num_experts_per_tok={self.num_experts_per_tok} must lie in 1..{self.num_experts}")

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def d_head(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rope_dim(self) -> int:
        return int(self.d_head * self.partial_rotary_factor)

    def is_moe(self, layer: int) -> bool:
        return self.moe_layer_freq[layer] != 0


class LLaDAMoEAttention(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig):
        super().__init__()
        self.cfg = cfg
        d, hd, kv, bias = cfg.hidden_size, cfg.d_head, cfg.kv_heads, cfg.attention_bias
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, kv * hd, bias=bias)
        self.v_proj = nn.Linear(d, kv * hd, bias=bias)
        self.o_proj = nn.Linear(d, d, bias=bias)
        if cfg.qk_layernorm:
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps)
        self.hooks = AttentionHooks(rotary=True)

    def forward(self, x: Float[torch.Tensor, "b p d"], cos, sin, mask: torch.Tensor | None) -> torch.Tensor:
        cfg, a = self.cfg, self.hooks
        b, p, _ = x.shape
        q = self.q_proj(x).view(b, p, cfg.num_attention_heads, cfg.d_head)
        k = self.k_proj(x).view(b, p, cfg.kv_heads, cfg.d_head)
        v = self.v_proj(x).view(b, p, cfg.kv_heads, cfg.d_head)
        q, k, v = a.hook_q(q), a.hook_k(k), a.hook_v(v)
        if cfg.qk_layernorm:
            q, k = self.q_norm(q), self.k_norm(k)
        if cfg.clip_qkv is not None:
            q, k, v = (t.clamp(-cfg.clip_qkv, cfg.clip_qkv) for t in (q, k, v))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
        q, k = a.heads(a.hook_rot_q, q), a.heads(a.hook_rot_k, k)
        return self.o_proj(attend(q, k, v, mask, a))


class LLaDAMoELayer(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig, layer: int):
        super().__init__()
        d = cfg.hidden_size
        self.self_attn = LLaDAMoEAttention(cfg)
        self.input_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.mlp: nn.Module
        self.shared_expert: ExpertMLP | None = None
        if cfg.is_moe(layer):
            bias = "block" if cfg.moe_router_enable_expert_bias else None
            router = SoftmaxTopK(cfg.num_experts_per_tok)
            self.mlp = MoEBlock(d, cfg.num_experts, cfg.expert_intermediate_size, router, expert_bias=bias)
            if cfg.shared_expert_intermediate_size is not None:
                self.shared_expert = ExpertMLP(d, cfg.shared_expert_intermediate_size)
        else:
            assert cfg.dense_intermediate_size is not None  # check() ensured it
            self.mlp = DenseMLP(d, cfg.dense_intermediate_size)
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: Float[torch.Tensor, "b p d"], cos, sin, mask) -> Float[torch.Tensor, "b p d"]:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.self_attn(self.input_layernorm(x), cos, sin, mask))
        h = self.post_attention_layernorm(x)
        out = self.mlp(h, self.shared_expert) if isinstance(self.mlp, MoEBlock) else self.mlp(h)
        return self.hook_resid_post(x + out)


class LLaDAMoEModel(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(LLaDAMoELayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LLaDAMoEModelLM(nn.Module):
    """Native LLaDA-MoE mask predictor: `forward(input_ids, attention_mask=None, position_ids=None) -> logits`."""

    no_split_modules = ["LLaDAMoELayer"]

    def __init__(self, cfg: LLaDAMoEConfig | dict):
        super().__init__()
        self.cfg = cfg if isinstance(cfg, LLaDAMoEConfig) else LLaDAMoEConfig.from_dict(cfg)
        self.model = LLaDAMoEModel(self.cfg)
        self.lm_head = nn.Linear(self.cfg.hidden_size, self.cfg.vocab_size, bias=False)
        self.hook_logits = HookPoint()
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def tied_keys(self) -> dict[str, str]:
        return {"lm_head.weight": "model.embed_tokens.weight"} if self.cfg.tie_word_embeddings else {}

    def forward(
        self,
        input_ids: Int[torch.Tensor, "b p"],
        attention_mask: torch.Tensor | None = None,
        position_ids: Int[torch.Tensor, "b p"] | None = None,
    ) -> Float[torch.Tensor, "b p v"]:
        """`attention_mask`: None or `[B, P]` 0/1 (LLaDA's generate passes it with padding); positions 0..P-1
        unless `position_ids` (the reference's default, also with padding)."""
        m = self.model
        x = m.embed_tokens(input_ids)
        b, p = input_ids.shape
        pos = torch.arange(p, device=x.device) if position_ids is None else position_ids.to(x.device)
        cos, sin = partial_rope(pos, self.cfg.rope_dim, self.cfg.rope_theta, x.dtype)
        mask = attention_bias(attention_mask, b, p, x.dtype, drop_all_ones=False)
        for layer in m.layers:
            x = layer(x, cos, sin, mask)
        return self.hook_logits(self.lm_head(m.norm(x)))


def _cfg(model: nn.Module) -> LLaDAMoEConfig:
    return cast(LLaDAMoEConfig, model.cfg)


def build_model(config: dict) -> LLaDAMoEModelLM:
    return LLaDAMoEModelLM(LLaDAMoEConfig.from_dict(config))


def dims(model: nn.Module) -> dict[str, Any]:
    """Sizes in TransformerLens' words, plus the MoE sizes (n_experts, top_k, d_expert)."""
    cfg = _cfg(model)
    return {
        "n_layers": cfg.num_hidden_layers,
        "d_model": cfg.hidden_size,
        "n_heads": cfg.num_attention_heads,
        "d_head": cfg.d_head,
        "n_kv_heads": None if cfg.kv_heads == cfg.num_attention_heads else cfg.kv_heads,
        "d_mlp": cfg.dense_intermediate_size or cfg.expert_intermediate_size,
        "d_vocab": cfg.vocab_size,
        "n_ctx": cfg.max_position_embeddings,
        "eps": cfg.rms_norm_eps,
        "n_experts": cfg.num_experts,
        "top_k": cfg.num_experts_per_tok,
        "d_expert": cfg.expert_intermediate_size,
        "embed_weight": "model.embed_tokens.weight",
        "unembed_weight": "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight",
    }


def layout(model: nn.Module) -> MoELayout:
    cfg = _cfg(model)
    return MoELayout(
        embed="model.embed_tokens",
        attn="self_attn",
        attn_out="o_proj",
        shared_down="model.layers.{l}.shared_expert.down_proj"
        if cfg.shared_expert_intermediate_size is not None
        else None,
        n_layers=cfg.num_hidden_layers,
        moe_layers=frozenset(i for i in range(cfg.num_hidden_layers) if cfg.is_moe(i)),
        n_experts=cfg.num_experts,
        tied=cfg.tie_word_embeddings,
    )


def build_sites(model: nn.Module) -> list[Site]:
    return moe_site_table(dims(model), layout(model))


def residual_writers(model: nn.Module) -> list[str]:
    return moe_residual_writers(layout(model))


def moe_writers(model: nn.Module, layer: int) -> tuple[list[str], list[str]]:
    return moe_writers_of(layout(model), layer)


def hub_keys(cfg: LLaDAMoEConfig) -> list[str]:
    """Sorted parameter (and persistent buffer) names of a hub checkpoint of `cfg`."""
    keys = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if cfg.tie_word_embeddings else ["lm_head.weight"])
    mlp3 = ("gate_proj", "up_proj", "down_proj")
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        keys += [f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight"]
        proj = ("q_proj", "k_proj", "v_proj", "o_proj")
        keys += [
            f"{p}.self_attn.{n}.{w}" for n in proj for w in (("weight", "bias") if cfg.attention_bias else ("weight",))
        ]
        if cfg.qk_layernorm:
            keys += [f"{p}.self_attn.q_norm.weight", f"{p}.self_attn.k_norm.weight"]
        if not cfg.is_moe(i):
            keys += [f"{p}.mlp.{n}.weight" for n in mlp3]
            continue
        keys += [f"{p}.mlp.gate.weight"] + ([f"{p}.mlp.expert_bias"] if cfg.moe_router_enable_expert_bias else [])
        keys += [f"{p}.mlp.experts.{e}.{n}.weight" for e in range(cfg.num_experts) for n in mlp3]
        if cfg.shared_expert_intermediate_size is not None:
            keys += [f"{p}.shared_expert.{n}.weight" for n in mlp3]
    return sorted(keys)


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """Field set of inclusionAI/LLaDA-MoE-7B-A1B's config.json, small sizes (d 64, 3 layers with one dense,
    8 experts top-3, a shared expert, expert bias), offline test-tokenizer ids."""
    from ..tiny_tokenizer import tiny_token_ids

    vocab = overrides.get("vocab_size", 320)
    ids = tiny_token_ids("llada", vocab_size=vocab, mask_token_id=overrides.get("mask_token_id"))
    cfg = {
        "architectures": ["LLaDAMoEModelLM"],
        "model_type": "lladamoe",
        "vocab_size": vocab,
        "hidden_size": 64,
        "dense_intermediate_size": 96,
        "expert_intermediate_size": 32,
        "shared_expert_intermediate_size": 48,
        "num_hidden_layers": 3,
        "moe_layer_freq": [0, 1, 1],
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "partial_rotary_factor": 0.5,
        "qk_layernorm": True,
        "attention_bias": False,
        "rms_norm_eps": 1e-6,
        "rope_theta": 50000.0,
        "max_position_embeddings": 512,
        "num_experts": 8,
        "num_experts_per_tok": 3,
        "moe_router_enable_expert_bias": True,
        "moe_router_score_function": "softmax",
        "norm_topk_prob": False,
        "tie_word_embeddings": False,
        "mask_token_id": ids["mask"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "bos_token_id": ids["bos"],
    }
    return {**cfg, **overrides}


SPEC = FamilySpec(
    name="lladamoe",
    model_types=("lladamoe", "llada_moe"),
    architectures=("LLaDAMoEModelLM",),
    default_mask_id=MASK_ID,
    sampler="llada",  # LLaDA's generate.py: the same sampler, settings and length key as the llada family
    recommended=dict(_llada.RECOMMENDED),
    build_sites=build_sites,
    residual_writers=residual_writers,
    moe_writers=moe_writers,
    dims=dims,
    length_key="gen_length",
    position_key="max_position_embeddings",
    generate=_llada.generate,
    build_model=build_model,
    size_fields=(
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "dense_intermediate_size",
        "expert_intermediate_size",
        "num_experts",
        "max_position_embeddings",
    ),
    tiny_config=tiny_config,
    tokenizer_style="llada",
    hub_keys=hub_keys,
)
