"""LLaDA2.0 / LLaDA2.1 mixture-of-experts (inclusionAI LLaDA2-mini 16B, LLaDA2-flash 100B), native in torch.

Behaviour follows `modeling_llada2_moe.py` (and `modeling_llada21_moe.py`, the same network) as mirrored in
ZHZisZZ/dllm; state-dict keys are the hub checkpoint's, so `trust_remote_code` is never needed:

* block: `x + dense(attn(input_layernorm(x)))`, then `+ mlp(post_attention_layernorm(x))`; the first
  `first_k_dense_replace` layers have a dense SwiGLU MLP (`intermediate_size`), the others an MoE block
  (`mdm_lens.families._moe`: grouped sigmoid routing with expert bias, `routed_scaling_factor`, shared experts);
* attention: one fused `query_key_value` projection, QK-norm (RMSNorm per head) when `use_qk_norm`, partial
  rotary on the first `head_dim * partial_rotary_factor` dims (cos / sin in the model dtype), GQA, no causal mask;
* masks: a 4D mask is used as given (the block-causal mask LLaDA2's sampler passes with `position_ids`; bool
  masks become 0 / finfo.min as the reference converts them); a 2D 0/1 padding mask hides padded keys and keeps
  attention bidirectional. WHY not the reference's 2D path: transformers' helper there builds a *causal* mask as
  soon as the 2D mask holds a 0 (an autoregressive leftover no LLaDA2 sampler uses), and none when it is all ones;
* logits are returned in float32 (`lm_head(h).float()`), as the reference does.

LLaDA2.1 differs only in generation (token editing, in its sampler) and in the config: `model_type`
`llada21_moe` in dllm's copy, `num_key_value_heads` 0 meaning "one per head" (here for both versions).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, cast

import torch
from jaxtyping import Float, Int
from torch import nn

from ..hook_points import HookPoint
from ._layers import AttentionHooks, RMSNorm, attend
from ._moe import DenseMLP, GroupedSigmoid, MoEBlock
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
from .kv_cache import KV, CachedOutput, LayerKV, layer_caches

MASK_ID = 156895  # "<|mask|>" of inclusionAI/LLaDA2.0-mini's tokenizer


@dataclass
class LLaDA2Config:
    """The config.json fields the forward needs (names as in configuration_llada2_moe.py)."""

    vocab_size: int = 157184
    hidden_size: int = 2048
    intermediate_size: int | None = None
    num_hidden_layers: int = 20
    num_attention_heads: int = 16
    num_key_value_heads: int | None = 4
    head_dim: int | None = None
    use_qkv_bias: bool = False
    use_qk_norm: bool = True
    use_bias: bool = True
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 16384
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    partial_rotary_factor: float = 0.5
    num_experts: int | None = 16
    num_shared_experts: int | None = 0
    num_experts_per_tok: int = 2
    n_group: int = 8
    topk_group: int = 4
    routed_scaling_factor: float = 2.5
    moe_intermediate_size: int | None = None
    first_k_dense_replace: int = 0
    mask_token_id: int = MASK_ID

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "LLaDA2Config":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in cfg.items() if k in known})
        out.check()
        return out

    def check(self) -> None:
        """Refuse what the native forward does not compute, naming the value and the fix."""
        if self.rope_scaling not in (None, {}) and self.rope_scaling.get("rope_type", "default") != "default":
            raise NotImplementedError(
                f"LLaDA2 rope_scaling={self.rope_scaling} is not supported natively (only default)"
            )
        if self.num_attention_heads % self.kv_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of num_key_value_heads={self.kv_heads}"
            )
        if self.num_experts is not None:
            if self.moe_intermediate_size is None:
                raise ValueError("LLaDA2 config has num_experts but no moe_intermediate_size; set it")
            if self.num_experts % self.n_group or not 0 < self.topk_group <= self.n_group:
                raise ValueError(
                    f"num_experts={self.num_experts}, n_group={self.n_group}, topk_group={self.topk_group}: experts must "
                    "split evenly into n_group groups and 0 < topk_group <= n_group"
                )
            if self.num_experts_per_tok > self.topk_group * (self.num_experts // self.n_group):
                raise ValueError(
                    f"num_experts_per_tok={self.num_experts_per_tok} exceeds the experts in topk_group={self.topk_group} "
                    f"groups of {self.num_experts // self.n_group}"
                )

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads  # 0 / None: one per head (LLaDA2.1's reading)

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def rope_dim(self) -> int:
        return int(self.d_head * self.partial_rotary_factor)

    def is_moe(self, layer: int) -> bool:
        return self.num_experts is not None and layer >= self.first_k_dense_replace


class LLaDA2Attention(nn.Module):
    """Fused-QKV attention with QK-norm and partial rotary; `hooks` carry TL's attention sites."""

    def __init__(self, cfg: LLaDA2Config):
        super().__init__()
        self.cfg = cfg
        hd, h, kv = cfg.d_head, cfg.num_attention_heads, cfg.kv_heads
        self.query_key_value = nn.Linear(cfg.hidden_size, (h + 2 * kv) * hd, bias=cfg.use_qkv_bias)
        if cfg.use_qk_norm:
            self.query_layernorm = RMSNorm(hd, cfg.rms_norm_eps)
            self.key_layernorm = RMSNorm(hd, cfg.rms_norm_eps)
        self.dense = nn.Linear(h * hd, cfg.hidden_size, bias=cfg.use_bias)
        self.hooks = AttentionHooks(rotary=True)

    def forward(
        self, x: Float[torch.Tensor, "b p d"], cos, sin, mask: torch.Tensor | None, cache: LayerKV | None = None
    ) -> torch.Tensor:
        cfg, a = self.cfg, self.hooks
        b, p, _ = x.shape
        h, kv = cfg.num_attention_heads, cfg.kv_heads
        qkv = self.query_key_value(x).view(b, p, h + 2 * kv, cfg.d_head)
        q, k, v = qkv.split([h, kv, kv], dim=-2)
        q, k, v = a.hook_q(q), a.hook_k(k), a.hook_v(v)
        if cfg.use_qk_norm:
            q, k = self.query_layernorm(q), self.key_layernorm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
        q, k = a.heads(a.hook_rot_q, q), a.heads(a.hook_rot_k, k)
        if cache is not None:  # a KV-cached forward (kv_cache): attend over the cached columns too
            k, v = cache.merge(k, v)
        return self.dense(attend(q, k, v, mask, a))


class LLaDA2Layer(nn.Module):
    def __init__(self, cfg: LLaDA2Config, layer: int):
        super().__init__()
        d = cfg.hidden_size
        self.attention = LLaDA2Attention(cfg)
        self.input_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.mlp: nn.Module
        if cfg.is_moe(layer):
            assert cfg.num_experts is not None and cfg.moe_intermediate_size is not None  # check() ensured it
            router = GroupedSigmoid(cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group, cfg.routed_scaling_factor)
            shared = None if cfg.num_shared_experts is None else cfg.moe_intermediate_size * cfg.num_shared_experts
            self.mlp = MoEBlock(
                d,
                cfg.num_experts,
                cfg.moe_intermediate_size,
                router,
                shared_hidden=shared,
                expert_bias="gate",
                gate_float32=True,
            )
        else:
            if cfg.intermediate_size is None:
                raise ValueError(f"layer {layer} is dense (first_k_dense_replace) but intermediate_size is not set")
            self.mlp = DenseMLP(d, cfg.intermediate_size)
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: Float[torch.Tensor, "b p d"], cos, sin, mask, kv=None) -> Float[torch.Tensor, "b p d"]:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.attention(self.input_layernorm(x), cos, sin, mask, kv))
        return self.hook_resid_post(x + self.mlp(self.post_attention_layernorm(x)))


class LLaDA2Model(nn.Module):
    def __init__(self, cfg: LLaDA2Config):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(LLaDA2Layer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LLaDA2MoeModelLM(nn.Module):
    """Native LLaDA2 mask predictor: `forward(input_ids, attention_mask=None, position_ids=None) -> logits`
    `[B, P, V]` in float32. `attention_mask`: None, `[B, N]` 0/1 padding, or LLaDA2's 4D block-causal mask."""

    no_split_modules = ["LLaDA2Layer"]

    def __init__(self, cfg: LLaDA2Config | dict):
        super().__init__()
        self.cfg = cfg if isinstance(cfg, LLaDA2Config) else LLaDA2Config.from_dict(cfg)
        self.model = LLaDA2Model(self.cfg)
        self.lm_head = nn.Linear(self.cfg.hidden_size, self.cfg.vocab_size, bias=False)
        self.hook_logits = HookPoint()
        self.tie_weights()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.word_embeddings

    def tied_keys(self) -> dict[str, str]:
        return {"lm_head.weight": "model.word_embeddings.weight"} if self.cfg.tie_word_embeddings else {}

    def tie_weights(self) -> None:
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.word_embeddings.weight

    def forward(
        self,
        input_ids: Int[torch.Tensor, "b p"],
        attention_mask: torch.Tensor | None = None,
        position_ids: Int[torch.Tensor, "b p"] | None = None,
        past_key_values: list[KV] | None = None,
        use_cache: bool = False,
        replace_position: torch.Tensor | None = None,
    ) -> Float[torch.Tensor, "b p v"] | CachedOutput:
        """`position_ids` default to 0..P-1 (the reference's default); LLaDA2's sampler passes them explicitly.
        KV-cached forwards (`kv_cache`; LLaDA2's block cache, `sampling.llada2_cached`): `input_ids` are the
        computed columns, the mask covers every key column; `use_cache=True` returns a `CachedOutput`."""
        m = self.model
        x = m.word_embeddings(input_ids)
        b, p = input_ids.shape
        kvs: list[LayerKV | None] = [None] * len(m.layers)
        start = 0
        if past_key_values is not None or use_cache or replace_position is not None:
            kvs[:], start, _ = layer_caches(past_key_values, len(m.layers), p, replace_position)
        pos = torch.arange(start, start + p, device=x.device) if position_ids is None else position_ids.to(x.device)
        if pos.shape[-1] != p:
            raise ValueError(f"position_ids has shape {tuple(pos.shape)}; it must be [{b} or 1, {p}]")
        cos, sin = partial_rope(pos, self.cfg.rope_dim, self.cfg.rope_theta, x.dtype)
        mask = attention_bias(attention_mask, b, p, x.dtype, drop_all_ones=True)
        for layer, kv in zip(m.layers, kvs):
            x = layer(x, cos, sin, mask, kv)
        logits = self.hook_logits(self.lm_head(m.norm(x)).float())
        present = [kv.present for kv in kvs if kv is not None and kv.present is not None]
        return CachedOutput(logits, present) if use_cache else logits


def _cfg(model: nn.Module) -> LLaDA2Config:
    return cast(LLaDA2Config, model.cfg)


def build_model(config: dict) -> LLaDA2MoeModelLM:
    return LLaDA2MoeModelLM(LLaDA2Config.from_dict(config))


def dims(model: nn.Module) -> dict[str, Any]:
    """Sizes in TransformerLens' words, plus the MoE sizes (n_experts, top_k, d_expert)."""
    cfg = _cfg(model)
    return {
        "n_layers": cfg.num_hidden_layers,
        "d_model": cfg.hidden_size,
        "n_heads": cfg.num_attention_heads,
        "d_head": cfg.d_head,
        "n_kv_heads": None if cfg.kv_heads == cfg.num_attention_heads else cfg.kv_heads,
        "d_mlp": cfg.intermediate_size or cfg.moe_intermediate_size,
        "d_vocab": cfg.vocab_size,
        "n_ctx": cfg.max_position_embeddings,
        "eps": cfg.rms_norm_eps,
        "n_experts": cfg.num_experts or 0,
        "top_k": cfg.num_experts_per_tok,
        "d_expert": cfg.moe_intermediate_size,
        "embed_weight": "model.word_embeddings.weight",
        "unembed_weight": "model.word_embeddings.weight" if cfg.tie_word_embeddings else "lm_head.weight",
    }


def layout(model: nn.Module) -> MoELayout:
    cfg = _cfg(model)
    return MoELayout(
        embed="model.word_embeddings",
        attn="attention",
        attn_out="dense",
        shared_down="model.layers.{l}.mlp.shared_experts.down_proj" if cfg.num_shared_experts is not None else None,
        n_layers=cfg.num_hidden_layers,
        moe_layers=frozenset(i for i in range(cfg.num_hidden_layers) if cfg.is_moe(i)),
        n_experts=cfg.num_experts or 0,
        tied=cfg.tie_word_embeddings,
    )


def build_sites(model: nn.Module) -> list[Site]:
    return moe_site_table(dims(model), layout(model))


def residual_writers(model: nn.Module) -> list[str]:
    return moe_residual_writers(layout(model))


def moe_writers(model: nn.Module, layer: int) -> tuple[list[str], list[str]]:
    return moe_writers_of(layout(model), layer)


def hub_keys(cfg: LLaDA2Config) -> list[str]:
    """Sorted parameter (and persistent buffer) names of a hub checkpoint of `cfg`."""
    keys = ["model.word_embeddings.weight", "model.norm.weight"] + (
        [] if cfg.tie_word_embeddings else ["lm_head.weight"]
    )
    mlp3 = ("gate_proj", "up_proj", "down_proj")
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        keys += [f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight"]
        keys += [f"{p}.attention.query_key_value.weight", f"{p}.attention.dense.weight"]
        keys += [f"{p}.attention.query_key_value.bias"] if cfg.use_qkv_bias else []
        keys += [f"{p}.attention.dense.bias"] if cfg.use_bias else []
        if cfg.use_qk_norm:
            keys += [f"{p}.attention.query_layernorm.weight", f"{p}.attention.key_layernorm.weight"]
        if not cfg.is_moe(i):
            keys += [f"{p}.mlp.{n}.weight" for n in mlp3]
            continue
        keys += [f"{p}.mlp.gate.weight", f"{p}.mlp.gate.expert_bias"]
        keys += [f"{p}.mlp.experts.{e}.{n}.weight" for e in range(cfg.num_experts or 0) for n in mlp3]
        if cfg.num_shared_experts is not None:
            keys += [f"{p}.mlp.shared_experts.{n}.weight" for n in mlp3]
    return sorted(keys)


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """Field set of inclusionAI/LLaDA2.0-mini's config.json, small sizes (d 64, 3 layers with one dense,
    8 experts in 4 groups, top-2 of 2 groups, one shared expert), offline test-tokenizer ids."""
    from ..tiny_tokenizer import tiny_token_ids

    vocab = overrides.get("vocab_size", 320)
    ids = tiny_token_ids("llada", vocab_size=vocab, mask_token_id=overrides.get("mask_token_id"))
    cfg = {
        "architectures": ["LLaDA2MoeModelLM"],
        "model_type": "llada2_moe",
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 96,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "partial_rotary_factor": 0.5,
        "use_qkv_bias": False,
        "use_qk_norm": True,
        "use_bias": False,
        "rms_norm_eps": 1e-6,
        "rope_theta": 600000.0,
        "max_position_embeddings": 512,
        "num_experts": 8,
        "num_shared_experts": 1,
        "num_experts_per_tok": 2,
        "n_group": 4,
        "topk_group": 2,
        "routed_scaling_factor": 2.5,
        "tie_word_embeddings": False,
        "mask_token_id": ids["mask"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "bos_token_id": ids["bos"],
    }
    return {**cfg, **overrides}


# config.json fields of inclusionAI/LLaDA2.0-mini that shape its weights (16.26B parameters; LLaDA2.1-mini shares
# them): for load tests on a random 16B-shaped model (`build_model(LLADA2_MINI)` under torch.device("meta")).
LLADA2_MINI: dict[str, Any] = {
    "architectures": ["LLaDA2MoeModelLM"],
    "model_type": "llada2_moe",
    "vocab_size": 157184,
    "hidden_size": 2048,
    "intermediate_size": 5120,
    "moe_intermediate_size": 512,
    "num_hidden_layers": 20,
    "first_k_dense_replace": 1,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "partial_rotary_factor": 0.5,
    "use_qkv_bias": False,
    "use_qk_norm": True,
    "use_bias": False,
    "rms_norm_eps": 1e-6,
    "rope_theta": 600000,
    "max_position_embeddings": 32768,
    "num_experts": 256,
    "num_shared_experts": 1,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "routed_scaling_factor": 2.5,
    "tie_word_embeddings": False,
    "pad_token_id": 156892,
}

# LLaDA2's block-diffusion sampler (the hub generate's defaults), `generate` and the KV-cached fast path.
from ._llada2_gen import FAST, RECOMMENDED, generate  # noqa: E402
from ..step_replay import block_causal_reason  # noqa: E402

SPEC = FamilySpec(
    name="llada2",
    model_types=("llada2_moe", "llada21_moe"),
    architectures=("LLaDA2MoeModelLM",),
    default_mask_id=MASK_ID,
    sampler="llada2",
    recommended=RECOMMENDED,
    build_sites=build_sites,
    residual_writers=residual_writers,
    moe_writers=moe_writers,
    dims=dims,
    length_key="gen_length",
    position_key="max_position_embeddings",
    generate=generate,
    fast=FAST,
    step_forward_refusal=lambda settings: block_causal_reason("llada2", "llada2"),
    replay_refusal=(
        "LLaDA2's block-diffusion sampler (threshold decoding, blocks that end early) takes no recorded "
        "unmasking schedule: replay= is implemented in the LLaDA and Dream samplers only"
    ),
    build_model=build_model,
    size_fields=(
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "intermediate_size",
        "moe_intermediate_size",
        "num_experts",
        "max_position_embeddings",
    ),
    tiny_config=tiny_config,
    tokenizer_style="llada",
    hub_keys=hub_keys,
)
