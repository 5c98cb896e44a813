"""Dream-v0 (Base / Instruct 7B), implemented natively in torch.

Behaviour follows the hub's `modeling_dream.py` (Dream-org/Dream-v0-Instruct-7B), a Qwen2 decoder run
bidirectionally; state-dict keys are the hub checkpoint's:

* pre-norm blocks, RMSNorm (`rms_norm_eps`) normalised in float32 and cast back before the weight;
* q/k/v projections with bias, o_proj and the MLP without; SwiGLU `down(silu(gate(h)) * up(h))`;
* default RoPE (`rope_theta`), cos/sin computed in float32 then cast to the activations' dtype;
* logits at position j-1 predict token j (the sampler shifts them: `logits_shift=True`).

Padding follows `diffusion_generate`: when a [B, P] `attention_mask` holds a 0 the model gets
position ids `cumsum(mask) - 1` (pads set to 1) and the 4-D boolean mask `mask_q AND mask_k`,
so padded query rows attend to nothing (SDPA returns zeros there). Explicit `position_ids` win.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import nn

from ..hook_points import HookPoint
from ._head_result import HeadResultLinear
from ._layers import AttentionHooks, RMSNorm, apply_rope, attend, rope_angles, site_table
from .base import FamilySpec, FastSupport, Site
from .kv_cache import KV, CachedOutput, LayerKV, layer_caches

MASK_ID = 151666


@dataclass
class DreamConfig:
    """config.json fields the forward needs (names as in the hub's configuration_dream.py)."""

    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 32
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    mask_token_id: int = MASK_ID
    pad_token_id: int | None = 151643

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "DreamConfig":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in cfg.items() if k in known})
        if out.num_key_value_heads is None:
            out.num_key_value_heads = out.num_attention_heads
        if out.hidden_act != "silu":
            raise NotImplementedError(f"Dream hidden_act {out.hidden_act!r} not supported natively (only silu)")
        scaling = out.rope_scaling or {}
        if scaling.get("rope_type", scaling.get("type", "default")) != "default":
            raise NotImplementedError(f"Dream rope_scaling {out.rope_scaling} not supported natively")
        if out.hidden_size % out.num_attention_heads or out.num_attention_heads % out.num_key_value_heads:
            raise ValueError("hidden_size / num_attention_heads / num_key_value_heads are incompatible")
        return out

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class DreamAttention(nn.Module):
    def __init__(self, cfg: DreamConfig):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.num_attention_heads * hd, bias=True)
        self.k_proj = nn.Linear(d, cfg.num_key_value_heads * hd, bias=True)
        self.v_proj = nn.Linear(d, cfg.num_key_value_heads * hd, bias=True)
        self.o_proj = HeadResultLinear(cfg.num_attention_heads * hd, d, False, cfg.num_attention_heads)  # + hook_result
        self.attn_hooks = AttentionHooks(rotary=False)  # TL's Dream adapter has no rot_q / rot_k

    def forward(
        self,
        h: Float[torch.Tensor, "b p d"],
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv: LayerKV | None = None,
    ) -> Float[torch.Tensor, "b p d"]:
        """`kv` (cached forwards only) merges this forward's rotated keys/values with the cached ones."""
        cfg = self.cfg
        b, p, _ = h.shape
        a = self.attn_hooks
        q = a.hook_q(self.q_proj(h).view(b, p, cfg.num_attention_heads, cfg.head_dim)).transpose(1, 2)
        k = a.hook_k(self.k_proj(h).view(b, p, cfg.num_key_value_heads, cfg.head_dim)).transpose(1, 2)
        v = a.hook_v(self.v_proj(h).view(b, p, cfg.num_key_value_heads, cfg.head_dim)).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        k = apply_rope(k, cos, sin)
        if kv is not None:
            k, v = kv.merge(k, v)
        return self.o_proj(attend(apply_rope(q, cos, sin), k, v, mask, a))


class DreamMLP(nn.Module):
    def __init__(self, cfg: DreamConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.act_fn = nn.SiLU()  # parameter-free, as the hub's ACT2FN module: names the activation
        self.hook_post = HookPoint()

    def forward(self, h: Float[torch.Tensor, "b p d"]) -> Float[torch.Tensor, "b p d"]:
        return self.down_proj(self.hook_post(self.act_fn(self.gate_proj(h)) * self.up_proj(h)))


class DreamDecoderLayer(nn.Module):
    def __init__(self, cfg: DreamConfig):
        super().__init__()
        self.self_attn = DreamAttention(cfg)
        self.mlp = DreamMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hook_resid_pre = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(
        self,
        x: Float[torch.Tensor, "b p d"],
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv: LayerKV | None = None,
    ) -> Float[torch.Tensor, "b p d"]:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv))
        return self.hook_resid_post(x + self.mlp(self.post_attention_layernorm(x)))


class DreamRotaryHooks(nn.Module):
    """Where the hub's `rotary_emb` sits (its inv_freq is a non-persistent buffer, so no key is lost): names the
    cos / sin tables `[batch or 1, pos, head_dim]` as TransformerLens' Dream adapter does."""

    def __init__(self):
        super().__init__()
        self.hook_cos = HookPoint()
        self.hook_sin = HookPoint()


class DreamBaseModel(nn.Module):
    def __init__(self, cfg: DreamConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DreamDecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = DreamRotaryHooks()


class DreamModel(nn.Module):
    """Native Dream: `forward(input_ids, attention_mask=None, position_ids=None) -> logits [B, P, V]`."""

    no_split_modules = ["DreamDecoderLayer"]

    def __init__(self, cfg: DreamConfig | dict):
        super().__init__()
        self.cfg = cfg if isinstance(cfg, DreamConfig) else DreamConfig.from_dict(cfg)
        self.model = DreamBaseModel(self.cfg)
        self.lm_head = nn.Linear(self.cfg.hidden_size, self.cfg.vocab_size, bias=False)
        self.hook_logits = HookPoint()
        self.tie_weights()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def tied_keys(self) -> dict[str, str]:
        return {"lm_head.weight": "model.embed_tokens.weight"} if self.cfg.tie_word_embeddings else {}

    def tie_weights(self) -> None:
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self,
        input_ids: Int[torch.Tensor, "b p"],
        attention_mask: torch.Tensor | str | None = None,
        position_ids: Int[torch.Tensor, "b p"] | None = None,
        past_key_values: list[KV] | None = None,
        use_cache: bool = False,
        replace_position: torch.Tensor | None = None,
    ) -> Float[torch.Tensor, "b p v"] | CachedOutput:
        """`attention_mask`: [B, P] 0/1 (as given to diffusion_generate, generation part included), a
        ready 4-D mask, or None / "full" for no padding.

        Cached forwards (Fast-dLLM's, see `kv_cache`): `input_ids` are the computed columns only, at absolute
        positions; Fast-dLLM's Dream cache has no padding, so neither do they (no position ids, no 0 in the
        mask). `use_cache=True` returns a `CachedOutput` (logits + cache)."""
        if past_key_values is None and not use_cache and replace_position is None:
            return self._forward(input_ids, attention_mask, position_ids)
        padded = isinstance(attention_mask, torch.Tensor) and (
            attention_mask.dim() == 4 or bool((attention_mask == 0).any())
        )
        if position_ids is not None or padded:
            raise ValueError(
                "cached Dream forwards take no position_ids and no padding mask (Fast-dLLM's Dream cache "
                "ignores padding); generate left-padded batches with the uncached sampler"
            )
        kvs, start, _ = layer_caches(past_key_values, self.cfg.num_hidden_layers, input_ids.shape[1], replace_position)
        pos = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)[None]
        logits = self._forward(input_ids, None, pos, kvs)
        return CachedOutput(logits, [kv.present for kv in kvs]) if use_cache else logits

    def _forward(self, input_ids, attention_mask, position_ids, kvs: list[LayerKV] | None = None):
        x = self.model.embed_tokens(input_ids)
        b, p = input_ids.shape
        mask = None
        if isinstance(attention_mask, torch.Tensor):
            if attention_mask.dim() == 4:
                mask = attention_mask.to(x.device)
            elif bool((attention_mask == 0).any()):
                keep = attention_mask.to(device=x.device, dtype=torch.bool)
                if position_ids is None:
                    position_ids = (keep.long().cumsum(-1) - 1).masked_fill(~keep, 1)
                mask = keep[:, None, None, :] & keep[:, None, :, None]
        if position_ids is None:
            position_ids = torch.arange(p, device=x.device)[None]
        ang = rope_angles(position_ids.to(x.device), self.cfg.head_dim, self.cfg.rope_theta)[:, None]
        rot = self.model.rotary_emb
        cos, sin = rot.hook_cos(ang.cos()[:, 0])[:, None], rot.hook_sin(ang.sin()[:, 0])[:, None]
        if kvs is None:
            for layer in self.model.layers:
                x = layer(x, cos, sin, mask)
        else:
            for layer, kv in zip(self.model.layers, kvs):
                x = layer(x, cos, sin, mask, kv)
        return self.hook_logits(self.lm_head(self.model.norm(x)))


def build_model(config: dict) -> DreamModel:
    return DreamModel(DreamConfig.from_dict(config))


def dims(model: nn.Module) -> dict[str, Any]:
    """Sizes in TransformerLens' words (its Dream adapter's cfg)."""
    cfg: DreamConfig = model.cfg
    return {
        "n_layers": cfg.num_hidden_layers,
        "d_model": cfg.hidden_size,
        "n_heads": cfg.num_attention_heads,
        "d_head": cfg.head_dim,
        "n_kv_heads": cfg.num_key_value_heads,
        "d_mlp": cfg.intermediate_size,
        "d_vocab": cfg.vocab_size,
        "n_ctx": cfg.max_position_embeddings,
        "eps": cfg.rms_norm_eps,
        "embed_weight": "model.embed_tokens.weight",
        "unembed_weight": "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight",
    }


def build_sites(model: nn.Module) -> list[Site]:
    b = "model.layers.{l}"
    paths = {
        "embed_in": ("model.embed_tokens", "input"),
        "embed": "model.embed_tokens",
        "rot_cos": "model.rotary_emb.hook_cos",
        "rot_sin": "model.rotary_emb.hook_sin",
        "resid_pre": f"{b}.hook_resid_pre",
        "ln1_scale": f"{b}.input_layernorm.hook_scale",
        "ln1_normalized": f"{b}.input_layernorm.hook_normalized",
        "ln1_out": f"{b}.input_layernorm",
        **{r: f"{b}.self_attn.attn_hooks.hook_{r}" for r in ("q", "k", "v", "attn_scores", "pattern", "z")},
        "result": f"{b}.self_attn.o_proj.hook_result",
        "attn_out": f"{b}.self_attn.o_proj",
        "resid_mid": f"{b}.hook_resid_mid",
        "ln2_scale": f"{b}.post_attention_layernorm.hook_scale",
        "ln2_normalized": f"{b}.post_attention_layernorm.hook_normalized",
        "ln2_out": f"{b}.post_attention_layernorm",
        "mlp_pre": f"{b}.mlp.gate_proj",
        "mlp_pre_linear": f"{b}.mlp.up_proj",
        "mlp_act": f"{b}.mlp.act_fn",
        "mlp_post": f"{b}.mlp.hook_post",
        "mlp_out": f"{b}.mlp.down_proj",
        "resid_post": f"{b}.hook_resid_post",
        "scale": "model.norm.hook_scale",
        "normalized": "model.norm.hook_normalized",
        "ln_final": "model.norm",
        "logits": "hook_logits",
    }
    linears = {
        "embed": "model.embed_tokens",
        "attn_out": f"{b}.self_attn.o_proj",
        "mlp_pre": f"{b}.mlp.gate_proj",
        "mlp_pre_linear": f"{b}.mlp.up_proj",
        "mlp_out": f"{b}.mlp.down_proj",
    }
    if not model.cfg.tie_word_embeddings:
        linears["logits"] = "lm_head"
    return site_table(dims(model), paths, linears)


def residual_writers(model: nn.Module) -> list[str]:
    out = ["model.embed_tokens"]
    for layer in range(model.cfg.num_hidden_layers):
        out += [f"model.layers.{layer}.self_attn.o_proj", f"model.layers.{layer}.mlp.down_proj"]
    return out


# Sampler defaults from the Dream GitHub README's diffusion_generate example (Dream-v0-Instruct-7B):
# max_new_tokens 512, steps 512 (= max_new_tokens), temperature 0.2, top_p 0.95, alg "entropy", alg_temp 0.
RECOMMENDED = {
    "max_new_tokens": 512,
    "steps": 512,
    "temperature": 0.2,
    "top_p": 0.95,
    "alg": "entropy",
    "alg_temp": 0.0,
}


def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    settings: dict[str, Any],
    *,
    on_step,
    trace,
    special: dict[str, int | None],
    return_history: bool = False,
) -> torch.Tensor:
    """The Dream reference sampler (`mdm_lens.sampling.dream_generate`) on the wrapper."""
    from ..sampling import dream_generate
    from ..sampling.common import check_kwargs

    check_kwargs(
        dream_generate, settings, {"model", "input_ids", "attention_mask", "on_step", "trace", "return_history"}
    )
    settings.setdefault("mask_token_id", model.mask_id)
    out = dream_generate(model, input_ids, attention_mask=attention_mask, on_step=on_step, trace=trace, **settings)
    return getattr(out, "sequences", out)


def _fast_sampler():
    from ..sampling import dream_generate_cached

    return dream_generate_cached


def _fast_prepare(settings: dict[str, Any], attention_mask: torch.Tensor | None) -> None:
    """Fast-dLLM's Dream block sampler decodes by entropy, or by threshold: `alg` is read, not passed; its
    cache ignores padding, so a left-padded batch is refused."""
    alg = settings.pop("alg", None)
    if alg == "confidence_threshold" and settings.get("threshold") is None:
        raise ValueError("alg='confidence_threshold' needs threshold=... on the fast sampler (pass threshold=0.9, say)")
    if attention_mask is not None and bool((attention_mask == 0).any()):
        raise ValueError(
            "sampler='fast' on Dream takes no left-padded batch (Fast-dLLM's Dream cache ignores "
            "padding): generate prompts of one length together, or use sampler='reference'"
        )


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """Field set of Dream-org/Dream-v0-Instruct-7B's config.json, small sizes (d 64, 2 layers, vocab 320)."""
    from ..tiny_tokenizer import tiny_token_ids

    vocab = overrides.get("vocab_size", 320)
    ids = tiny_token_ids("dream", vocab_size=vocab, mask_token_id=overrides.get("mask_token_id"))
    cfg = {
        "architectures": ["DreamModel"],
        "model_type": "Dream",
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "use_cache": False,
        "use_sliding_window": False,
        "vocab_size": vocab,
        "mask_token_id": ids["mask"],
        "pad_token_id": ids["pad"],
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
    }
    return {**cfg, **overrides}


def hub_keys(cfg: DreamConfig) -> list[str]:
    """Sorted parameter names of a hub checkpoint of `cfg` (Qwen2 naming)."""
    keys = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if cfg.tie_word_embeddings else ["lm_head.weight"])
    for layer in range(cfg.num_hidden_layers):
        pre = f"model.layers.{layer}"
        keys += [
            f"{pre}.input_layernorm.weight",
            f"{pre}.post_attention_layernorm.weight",
            f"{pre}.self_attn.o_proj.weight",
            f"{pre}.mlp.gate_proj.weight",
            f"{pre}.mlp.up_proj.weight",
            f"{pre}.mlp.down_proj.weight",
        ]
        keys += [f"{pre}.self_attn.{n}_proj.{w}" for n in "qkv" for w in ("weight", "bias")]
    return sorted(keys)


SPEC = FamilySpec(
    name="dream",
    model_types=("dream",),
    architectures=("DreamModel",),
    default_mask_id=MASK_ID,
    sampler="dream",
    recommended=RECOMMENDED,
    logits_shift=True,
    build_sites=build_sites,
    residual_writers=residual_writers,
    dims=dims,
    length_key="max_new_tokens",
    position_key="max_position_embeddings",
    generate=generate,
    fast=FastSupport(_fast_sampler, "mask_token_id", defaults={"block_length": 32}, prepare=_fast_prepare),
    build_model=build_model,
    size_fields=(
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "intermediate_size",
        "max_position_embeddings",
    ),
    tiny_config=tiny_config,
    tokenizer_style="dream",
    hub_keys=hub_keys,
)
