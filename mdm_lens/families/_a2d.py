"""dllm's A2D models (AR-to-diffusion: Qwen3 / Qwen2 / Llama run bidirectionally), implemented natively in torch.

Behaviour follows ZHZisZZ/dllm `dllm/pipelines/a2d/models/{qwen3,qwen2,llama}/modeling_*.py` (transformers 4.x
subclasses of the AR models whose only change is the attention mask); state-dict keys are the converted
checkpoint's (transformers naming, `model.layers.N.self_attn.q_proj.weight` ...), so `trust_remote_code` is never
needed. One module serves the three architectures; `A2DConfig.arch` says which:

* qwen3: QK-norm (RMSNorm over each head's `head_dim`, on the projections before rotary), `head_dim` from the
  config (Qwen3-0.6B: 128 with hidden 1024 and 16 heads), q/k/v/o bias = `attention_bias`;
* qwen2: q/k/v with bias, o_proj without;
* llama: q/k/v/o bias = `attention_bias`, MLP bias = `mlp_bias`, rotary `rope_type` "default" or "llama3".

Common to all: pre-norm blocks, RMSNorm normalised in float32 and cast back before the weight; SwiGLU MLP;
rotary cos/sin computed in float32 then cast to the activations' dtype; logits = lm_head(norm(x)) (tied to the
embedding when `tie_word_embeddings`).

Attention is never causal. A [B, P] `attention_mask` only hides padded *keys* (padded queries still attend),
as `_prepare_4d_attention_mask` builds it; positions stay 0..P-1 whatever the padding (the reference uses
`cache_position`). A 4-D mask (BD3LM's block-causal bool mask, or an additive float mask) is used as given,
with explicit `position_ids` (BD3LM passes the logical positions of a left-padded canvas). Cached forwards
(`families.kv_cache`): the computed columns attend over the cache's columns and their own, positions continue
after the cache unless `position_ids` are given, as the reference's `DynamicCache` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import nn

from ..hook_points import HookPoint
from ._layers import AttentionHooks, RMSNorm, apply_rope, attend
from .kv_cache import KV, CachedOutput, LayerKV, layer_caches

ARCHES = ("qwen3", "qwen2", "llama")
ROPE_TYPES = ("default", "llama3")


@dataclass
class A2DConfig:
    """The config.json fields the forward needs (transformers' Qwen3Config / Qwen2Config / LlamaConfig names)."""

    arch: str = "qwen3"
    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 40960
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    mask_token_id: int | None = None

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], arch: str) -> "A2DConfig":
        known = {f.name for f in fields(cls)} - {"arch"}
        out = cls(arch=arch, **{k: v for k, v in cfg.items() if k in known})
        out.check()
        return out

    def check(self) -> None:
        """Refuse what the native forward does not compute, naming the value and what is supported."""
        if self.arch not in ARCHES:
            raise ValueError(f"A2D arch {self.arch!r} unknown; use one of {ARCHES}")
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.hidden_act != "silu":
            raise NotImplementedError(f"A2D hidden_act={self.hidden_act!r} not supported natively (only 'silu')")
        if self.rope_type not in ROPE_TYPES:
            raise NotImplementedError(
                f"A2D rope_scaling={self.rope_scaling} (rope_type {self.rope_type!r}) not supported natively; "
                f"supported rope types: {ROPE_TYPES}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads="
                f"{self.num_attention_heads}; give head_dim explicitly"
            )

    @property
    def rope_type(self) -> str:
        s = self.rope_scaling or {}
        return str(s.get("rope_type", s.get("type", "default")))

    @property
    def d_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return int(self.num_key_value_heads or self.num_attention_heads)

    @property
    def qkv_bias(self) -> bool:
        return True if self.arch == "qwen2" else self.attention_bias

    @property
    def o_bias(self) -> bool:
        return False if self.arch == "qwen2" else self.attention_bias


def inv_freq(cfg: A2DConfig) -> Float[torch.Tensor, " half"]:
    """Rotary inverse frequencies in float32, as transformers' default / llama3 rope init computes them."""
    dim = cfg.d_head
    base = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float) / dim))
    if cfg.rope_type == "default":
        return base
    s = cfg.rope_scaling or {}
    factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / base
    scaled = torch.where(wavelen > old / lo, base / factor, base)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) * ~(wavelen > old / lo)
    return torch.where(medium, smoothed, scaled)


class A2DAttention(nn.Module):
    """q/k/v/o projections (+ Qwen3's q_norm / k_norm); hooks in TransformerLens' layouts (`AttentionHooks`):
    hook_q / hook_k fire on the projections, before QK-norm and rotary; hook_rot_q / hook_rot_k after both."""

    def __init__(self, cfg: A2DConfig):
        super().__init__()
        self.cfg = cfg
        d, hd, h, kv = cfg.hidden_size, cfg.d_head, cfg.num_attention_heads, cfg.kv_heads
        self.q_proj = nn.Linear(d, h * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(d, kv * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(d, kv * hd, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(h * hd, d, bias=cfg.o_bias)
        if cfg.arch == "qwen3":
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps)
        self.attn_hooks = AttentionHooks(rotary=True)

    def _heads(self, proj: nn.Linear, hook: HookPoint, norm: str, h: torch.Tensor, n: int) -> torch.Tensor:
        b, p, _ = h.shape
        x = hook(proj(h).view(b, p, n, self.cfg.d_head))
        if self.cfg.arch == "qwen3":
            x = getattr(self, norm)(x)
        return x.transpose(1, 2)

    def forward(
        self, h: Float[torch.Tensor, "b p d"], cos: torch.Tensor, sin: torch.Tensor, mask, kv: LayerKV | None
    ) -> Float[torch.Tensor, "b p d"]:
        cfg, a = self.cfg, self.attn_hooks
        q = self._heads(self.q_proj, a.hook_q, "q_norm", h, cfg.num_attention_heads)
        k = self._heads(self.k_proj, a.hook_k, "k_norm", h, cfg.kv_heads)
        b, p, _ = h.shape
        v = a.hook_v(self.v_proj(h).view(b, p, cfg.kv_heads, cfg.d_head)).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = a.heads(a.hook_rot_q, apply_rope(q, cos, sin))
        k = a.heads(a.hook_rot_k, apply_rope(k, cos, sin))
        if kv is not None:
            k, v = kv.merge(k, v)
        return self.o_proj(attend(q, k, v, mask, a))


class A2DMLP(nn.Module):
    def __init__(self, cfg: A2DConfig):
        super().__init__()
        d, f, bias = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias and cfg.arch == "llama"
        self.gate_proj = nn.Linear(d, f, bias=bias)
        self.up_proj = nn.Linear(d, f, bias=bias)
        self.down_proj = nn.Linear(f, d, bias=bias)
        self.act_fn = nn.SiLU()  # parameter-free, as transformers' ACT2FN module: names the activation
        self.hook_post = HookPoint()

    def forward(self, h: Float[torch.Tensor, "b p d"]) -> Float[torch.Tensor, "b p d"]:
        return self.down_proj(self.hook_post(self.act_fn(self.gate_proj(h)) * self.up_proj(h)))


class A2DDecoderLayer(nn.Module):
    def __init__(self, cfg: A2DConfig):
        super().__init__()
        self.self_attn = A2DAttention(cfg)
        self.mlp = A2DMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hook_resid_pre = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x, cos, sin, mask, kv: LayerKV | None = None) -> Float[torch.Tensor, "b p d"]:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv))
        return self.hook_resid_post(x + self.mlp(self.post_attention_layernorm(x)))


class A2DBaseModel(nn.Module):
    def __init__(self, cfg: A2DConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(A2DDecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class A2DLMHeadModel(nn.Module):
    """Native A2D mask predictor: `forward(input_ids, attention_mask=None, position_ids=None) -> logits [B, P, V]`."""

    no_split_modules = ["A2DDecoderLayer"]

    def __init__(self, cfg: A2DConfig):
        super().__init__()
        self.cfg = cfg
        self.model = A2DBaseModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.hook_logits = HookPoint()
        self._inv_freq: dict[torch.device, torch.Tensor] = {}  # not a buffer: meta-initialised loads keep it
        self.tie_weights()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def tied_keys(self) -> dict[str, str]:
        return {"lm_head.weight": "model.embed_tokens.weight"} if self.cfg.tie_word_embeddings else {}

    def tie_weights(self) -> None:
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def rotary_inv_freq(self, device: torch.device) -> torch.Tensor:
        """float32 whatever the weights' dtype, as transformers' from_pretrained(dtype=...) keeps its inv_freq."""
        if device not in self._inv_freq:
            self._inv_freq[device] = inv_freq(self.cfg).to(device)
        return self._inv_freq[device]

    def forward(
        self,
        input_ids: Int[torch.Tensor, "b p"],
        attention_mask: torch.Tensor | None = None,
        position_ids: Int[torch.Tensor, "b p"] | None = None,
        past_key_values: list[KV] | None = None,
        use_cache: bool = False,
        replace_position: torch.Tensor | None = None,
    ) -> Float[torch.Tensor, "b p v"] | CachedOutput:
        """`attention_mask`: [B, P] 0/1 (0 hides that key), or a 4-D mask used as given ([B, 1, P, keys]: bool
        keeps True, float is added). Cached forwards (`families.kv_cache`): `input_ids` are the computed
        columns, `past_key_values` the cache, `replace_position` the dual cache's run; a [B, n] mask then covers
        every key column. `use_cache=True` returns a `CachedOutput` (logits + cache)."""
        if past_key_values is None and not use_cache and replace_position is None:
            return self._forward(input_ids, attention_mask, position_ids, None, 0, input_ids.shape[1])
        n = self.cfg.num_hidden_layers
        kvs, start, n_keys = layer_caches(past_key_values, n, input_ids.shape[1], replace_position)
        logits = self._forward(input_ids, attention_mask, position_ids, kvs, start, n_keys)
        return CachedOutput(logits, [kv.present for kv in kvs if kv.present is not None]) if use_cache else logits

    def _mask(self, attention_mask: torch.Tensor | None, b: int, p: int, n_keys: int, device) -> torch.Tensor | None:
        if attention_mask is None:
            return None
        if attention_mask.dim() == 4:
            if attention_mask.shape[-2:] != (p, n_keys):
                raise ValueError(
                    f"4-D attention_mask has shape {tuple(attention_mask.shape)}; this forward has {p} query and "
                    f"{n_keys} key columns, so it must be [batch, 1, {p}, {n_keys}]"
                )
            return attention_mask.to(device)
        if attention_mask.shape != (b, n_keys):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; this forward attends over {n_keys} "
                f"key columns, so it must be [{b}, {n_keys}] (0 = padding) or 4-D"
            )
        if not bool((attention_mask == 0).any()):
            return None
        return attention_mask.to(device=device, dtype=torch.bool).view(b, 1, 1, n_keys)

    def _forward(self, input_ids, attention_mask, position_ids, kvs: list[LayerKV] | None, start: int, n_keys: int):
        x = self.model.embed_tokens(input_ids)
        b, p = input_ids.shape
        mask = self._mask(attention_mask, b, p, n_keys, x.device)
        if position_ids is None:
            position_ids = torch.arange(start, start + p, device=x.device)[None]
        ang = position_ids.to(x.device).float()[..., None] * self.rotary_inv_freq(x.device)
        ang = torch.cat((ang, ang), dim=-1)[:, None]
        cos, sin = ang.cos(), ang.sin()
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, None if kvs is None else kvs[i])
        return self.hook_logits(self.lm_head(self.model.norm(x)))
