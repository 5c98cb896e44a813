"""LLaDA-8B (Base / Instruct) and LLaDA 1.5, implemented natively in torch.

Behaviour follows the hub's `modeling_llada.py` (GSAI-ML/LLaDA-8B-Instruct, the 2025-10 revision that
honours `attention_mask`), state-dict keys are the hub checkpoint's, so `trust_remote_code` is never needed:

* llama block: `x + attn_out(attn(attn_norm(x)))`, then `+ ff_out(silu(ff_proj(h)) * up_proj(h))`, h = ff_norm(x)
  (`ff_proj` is the gate, `up_proj` the up projection, `ff_out` the down projection);
* RMSNorm with `rms_norm_eps`, normalised in float32 and cast back before the weight multiply;
* RoPE on absolute positions 0..P-1 (no position ids, even with left padding), applied in float32
  (`rope_full_precision`), `rotate_half` convention;
* attention is bidirectional; a [B, P] `attention_mask` only hides padded *keys* (padded queries still
  attend), and only when it contains a 0, exactly as the reference builds its additive bias;
* logits have `embedding_size` columns (the reference never slices them to `vocab_size`).
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

MASK_ID = 126336


@dataclass
class LLaDAConfig:
    """The config.json fields the forward needs (names as in the hub's configuration_llada.py)."""

    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = None
    n_layers: int = 32
    mlp_hidden_size: int | None = None
    mlp_ratio: int = 4
    vocab_size: int = 126464
    embedding_size: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    mask_token_id: int = MASK_ID
    include_bias: bool = False
    include_qkv_bias: bool = False
    bias_for_layer_norm: bool | None = None
    weight_tying: bool = False
    multi_query_attention: bool | None = None
    max_sequence_length: int = 4096
    input_emb_norm: bool = False
    scale_logits: bool = False
    rope: bool = True
    rope_full_precision: bool = True
    alibi: bool = False
    block_type: str = "llama"
    layer_norm_type: str = "rms"
    activation_type: str = "silu"
    attention_layer_norm: bool = False
    layer_norm_with_affine: bool = True
    block_group_size: int = 1

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "LLaDAConfig":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in cfg.items() if k in known})
        out.check()
        return out

    def check(self) -> None:
        """Refuse variants the hub LLaDA checkpoints never use instead of computing something else."""
        wanted = {
            "block_type": "llama",
            "layer_norm_type": "rms",
            "activation_type": "silu",
            "rope": True,
            "alibi": False,
            "attention_layer_norm": False,
            "layer_norm_with_affine": True,
            "block_group_size": 1,
        }
        bad = {k: getattr(self, k) for k, v in wanted.items() if getattr(self, k) != v}
        if bad:
            raise NotImplementedError(f"LLaDA config variant not supported natively: {bad} (supported: {wanted})")
        if self.d_model % self.n_heads or self.n_heads % self.kv_heads:
            raise ValueError(f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.kv_heads} incompatible")

    @property
    def kv_heads(self) -> int:
        if self.multi_query_attention:
            return 1
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def hidden(self) -> int:
        return self.mlp_hidden_size if self.mlp_hidden_size is not None else self.mlp_ratio * self.d_model

    @property
    def n_embed(self) -> int:
        return self.embedding_size or self.vocab_size

    @property
    def norm_bias(self) -> bool:
        return self.include_bias if self.bias_for_layer_norm is None else self.bias_for_layer_norm


class LLaDABlock(nn.Module):
    """One llama-style block; HookPoints name the residual stream, the MLP activation and (`attn_hooks`, no
    parameters) the attention internals in TransformerLens' layouts."""

    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.cfg = cfg
        d, kv, bias = cfg.d_model, cfg.kv_heads * cfg.head_dim, cfg.include_bias
        qkv_bias = cfg.include_bias or cfg.include_qkv_bias
        self.attn_norm = RMSNorm(d, cfg.rms_norm_eps, cfg.norm_bias)
        self.ff_norm = RMSNorm(d, cfg.rms_norm_eps, cfg.norm_bias)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv, bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv, bias=qkv_bias)
        self.attn_out = HeadResultLinear(d, d, bias, cfg.n_heads)  # an nn.Linear with TL's hook_result
        self.ff_proj = nn.Linear(d, cfg.hidden, bias=bias)
        self.up_proj = nn.Linear(d, cfg.hidden, bias=bias)
        self.ff_out = nn.Linear(cfg.hidden, d, bias=bias)
        self.act = nn.SiLU()
        self.hook_resid_pre = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_post = HookPoint()
        self.hook_resid_post = HookPoint()
        self.attn_hooks = AttentionHooks(rotary=True)

    def forward(
        self,
        x: Float[torch.Tensor, "b p d"],
        cos: Float[torch.Tensor, "bc 1 p hd"],
        sin: Float[torch.Tensor, "bc 1 p hd"],
        mask: torch.Tensor | None,
        kv: LayerKV | None = None,
    ) -> Float[torch.Tensor, "b p d"]:
        """`kv` (cached forwards only) merges this forward's rotated keys/values with the cached ones."""
        cfg = self.cfg
        x = self.hook_resid_pre(x)
        b, p, _ = x.shape
        h = self.attn_norm(x)
        a = self.attn_hooks
        q = a.hook_q(self.q_proj(h).view(b, p, cfg.n_heads, cfg.head_dim)).transpose(1, 2)
        k = a.hook_k(self.k_proj(h).view(b, p, cfg.kv_heads, cfg.head_dim)).transpose(1, 2)
        v = a.hook_v(self.v_proj(h).view(b, p, cfg.kv_heads, cfg.head_dim)).transpose(1, 2)
        if cfg.rope_full_precision:
            q, k = apply_rope(q.float(), cos, sin).type_as(q), apply_rope(k.float(), cos, sin).type_as(k)
        else:
            q, k = apply_rope(q, cos.type_as(q), sin.type_as(q)), apply_rope(k, cos.type_as(k), sin.type_as(k))
        q, k = a.heads(a.hook_rot_q, q), a.heads(a.hook_rot_k, k)
        if kv is not None:
            k, v = kv.merge(k, v)
        x = self.hook_resid_mid(x + self.attn_out(attend(q, k, v, mask, a)))
        h = self.ff_norm(x)
        post = self.hook_mlp_post(self.act(self.ff_proj(h)) * self.up_proj(h))
        return self.hook_resid_post(x + self.ff_out(post))


class LLaDAModel(nn.Module):
    """Holds `transformer` so parameter names read `model.transformer.*` under the LM wrapper."""

    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        mods: dict[str, nn.Module] = {
            "wte": nn.Embedding(cfg.n_embed, cfg.d_model),
            "blocks": nn.ModuleList(LLaDABlock(cfg) for _ in range(cfg.n_layers)),
            "ln_f": RMSNorm(cfg.d_model, cfg.rms_norm_eps, cfg.norm_bias),
        }
        if not cfg.weight_tying:
            mods["ff_out"] = nn.Linear(cfg.d_model, cfg.n_embed, bias=cfg.include_bias)
        self.transformer = nn.ModuleDict(mods)


class LLaDAModelLM(nn.Module):
    """Native LLaDA mask predictor: `forward(input_ids, attention_mask=None) -> logits [B, P, V]`."""

    no_split_modules = ["LLaDABlock"]

    def __init__(self, cfg: LLaDAConfig | dict):
        super().__init__()
        self.cfg = cfg if isinstance(cfg, LLaDAConfig) else LLaDAConfig.from_dict(cfg)
        self.model = LLaDAModel(self.cfg)
        self.hook_logits = HookPoint()
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer.wte

    def tied_keys(self) -> dict[str, str]:
        """Parameters shared with another key (none: LLaDA ties by reusing wte in F.linear)."""
        return {}

    def _rope(self, p: int, device: torch.device, position_ids: torch.Tensor | None, start: int = 0):
        """cos/sin of positions start..start+p-1 (a cached forward computes a slice), or of `position_ids`."""
        if position_ids is not None:
            ang = rope_angles(position_ids.to(device), self.cfg.head_dim, self.cfg.rope_theta)[:, None]
            return ang.cos(), ang.sin()
        key = (start, p, device)
        if key not in self._rope_cache:
            pos = torch.arange(start, start + p, device=device)
            ang = rope_angles(pos, self.cfg.head_dim, self.cfg.rope_theta)[None, None]
            if len(self._rope_cache) >= 8:  # a cached sampler alternates a few (start, length) shapes
                self._rope_cache.clear()
            self._rope_cache[key] = (ang.cos(), ang.sin())
        return self._rope_cache[key]

    def forward(
        self,
        input_ids: Int[torch.Tensor, "b p"],
        attention_mask: Int[torch.Tensor, "b n"] | None = None,
        position_ids: Int[torch.Tensor, "b p"] | None = None,
        past_key_values: list[KV] | None = None,
        use_cache: bool = False,
        replace_position: torch.Tensor | None = None,
    ) -> Float[torch.Tensor, "b p v"] | CachedOutput:
        """`position_ids` is an extension (the reference always uses 0..P-1); leave it None to match it.

        Cached forwards (Fast-dLLM's, see `kv_cache`): `input_ids` are the computed columns only,
        `past_key_values` the cache, `replace_position` selects the dual cache; `attention_mask` then covers
        every key column (cached and computed). `use_cache=True` returns a `CachedOutput` (logits + cache).
        """
        if past_key_values is None and not use_cache and replace_position is None:
            return self._forward(input_ids, attention_mask, position_ids, None, 0)
        if position_ids is not None:
            raise ValueError(
                "position_ids cannot be combined with past_key_values/use_cache: cached forwards use "
                "the reference's absolute positions (leave position_ids None)"
            )
        kvs, start, n_keys = layer_caches(past_key_values, self.cfg.n_layers, input_ids.shape[1], replace_position)
        logits = self._forward(input_ids, attention_mask, None, kvs, start, n_keys)
        return CachedOutput(logits, [kv.present for kv in kvs]) if use_cache else logits

    def _forward(
        self, input_ids, attention_mask, position_ids, kvs: list[LayerKV] | None, start: int, n_keys: int | None = None
    ) -> Float[torch.Tensor, "b p v"]:
        t = self.model.transformer
        x = t.wte(input_ids)
        if self.cfg.input_emb_norm:
            x = x * (self.cfg.d_model**0.5)
        b, p = input_ids.shape
        n_keys = p if n_keys is None else n_keys
        mask = None
        if attention_mask is not None:
            if kvs is not None and attention_mask.shape != (b, n_keys):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; this forward attends "
                    f"over {n_keys} key columns, so it must be [{b}, {n_keys}]"
                )
            if bool((attention_mask == 0).any()):
                mask = attention_mask.to(device=x.device, dtype=torch.bool).view(b, 1, 1, n_keys)
        cos, sin = self._rope(p, x.device, position_ids, start)
        if kvs is None:
            for block in t.blocks:
                x = block(x, cos, sin, mask)
        else:
            for block, kv in zip(t.blocks, kvs):
                x = block(x, cos, sin, mask, kv)
        x = t.ln_f(x)
        logits = torch.nn.functional.linear(x, t.wte.weight) if self.cfg.weight_tying else t.ff_out(x)
        if self.cfg.scale_logits:
            logits = logits * (1 / self.cfg.d_model**0.5)
        return self.hook_logits(logits)


def build_model(config: dict) -> LLaDAModelLM:
    return LLaDAModelLM(LLaDAConfig.from_dict(config))


def dims(model: nn.Module) -> dict[str, Any]:
    """Sizes in TransformerLens' words (its LLaDA adapter's cfg: n_kv_heads None when every head has its own)."""
    cfg: LLaDAConfig = model.cfg
    t = "model.transformer"
    return {
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "d_head": cfg.head_dim,
        "n_kv_heads": None if cfg.kv_heads == cfg.n_heads else cfg.kv_heads,
        "d_mlp": cfg.hidden,
        "d_vocab": cfg.n_embed,
        "n_ctx": cfg.max_sequence_length,
        "eps": cfg.rms_norm_eps,
        "embed_weight": f"{t}.wte.weight",
        "unembed_weight": f"{t}.wte.weight" if cfg.weight_tying else f"{t}.ff_out.weight",
    }


def build_sites(model: nn.Module) -> list[Site]:
    t, b = "model.transformer", "model.transformer.blocks.{l}"
    paths = {
        "embed_in": (f"{t}.wte", "input"),
        "embed": f"{t}.wte",
        "resid_pre": f"{b}.hook_resid_pre",
        "ln1_scale": f"{b}.attn_norm.hook_scale",
        "ln1_normalized": f"{b}.attn_norm.hook_normalized",
        "ln1_out": f"{b}.attn_norm",
        **{r: f"{b}.attn_hooks.hook_{r}" for r in ("q", "k", "v", "rot_q", "rot_k", "attn_scores", "pattern", "z")},
        "result": f"{b}.attn_out.hook_result",
        "attn_out": f"{b}.attn_out",
        "resid_mid": f"{b}.hook_resid_mid",
        "ln2_scale": f"{b}.ff_norm.hook_scale",
        "ln2_normalized": f"{b}.ff_norm.hook_normalized",
        "ln2_out": f"{b}.ff_norm",
        "mlp_pre": f"{b}.ff_proj",
        "mlp_pre_linear": f"{b}.up_proj",
        "mlp_act": f"{b}.act",
        "mlp_post": f"{b}.hook_mlp_post",
        "mlp_out": f"{b}.ff_out",
        "resid_post": f"{b}.hook_resid_post",
        "scale": f"{t}.ln_f.hook_scale",
        "normalized": f"{t}.ln_f.hook_normalized",
        "ln_final": f"{t}.ln_f",
        "logits": "hook_logits",
    }
    linears = {
        "embed": f"{t}.wte",
        "attn_out": f"{b}.attn_out",
        "mlp_pre": f"{b}.ff_proj",
        "mlp_pre_linear": f"{b}.up_proj",
        "mlp_out": f"{b}.ff_out",
    }
    if not model.cfg.weight_tying:
        linears["logits"] = f"{t}.ff_out"
    return site_table(dims(model), paths, linears)


def residual_writers(model: nn.Module) -> list[str]:
    t = "model.transformer"
    out = [f"{t}.wte"]
    for layer in range(model.cfg.n_layers):
        out += [f"{t}.blocks.{layer}.attn_out", f"{t}.blocks.{layer}.ff_out"]
    return out


# Sampler defaults. Sources: LLaDA GitHub generate.py / chat.py (steps = gen_length = 128, block_length 32,
# temperature 0, remasking low_confidence, cfg_scale 0).
RECOMMENDED = {
    "gen_length": 128,
    "steps": 128,
    "block_length": 32,
    "temperature": 0.0,
    "cfg_scale": 0.0,
    "remasking": "low_confidence",
    "logits_eos_inf": False,
    "confidence_eos_eot_inf": False,
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
    """The LLaDA reference sampler (`mdm_lens.sampling.llada_generate`) on the wrapper, EOS / EOT from the
    tokenizer; the unmasking history comes from `trace`."""
    from ..sampling import llada_generate
    from ..sampling.common import check_kwargs

    check_kwargs(llada_generate, settings, {"model", "prompt", "attention_mask", "on_step", "trace", "return_history"})
    settings.setdefault("mask_id", model.mask_id)
    if special["eos"] is not None:
        settings.setdefault("eos_id", special["eos"])
    if special["eot"] is not None:
        settings.setdefault("eot_id", special["eot"])
    return llada_generate(model, input_ids, attention_mask=attention_mask, on_step=on_step, trace=trace, **settings)


def _fast_sampler():
    from ..sampling import llada_generate_cached

    return llada_generate_cached


def _fast_prepare(settings: dict[str, Any], attention_mask: torch.Tensor | None) -> None:
    if attention_mask is not None:
        settings["attention_mask"] = attention_mask


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """Field set of GSAI-ML/LLaDA-8B-Instruct's config.json, small sizes (d 64, 2 layers, vocab 320)."""
    from ..tiny_tokenizer import tiny_token_ids

    vocab = overrides.get("vocab_size", 320)
    ids = tiny_token_ids("llada", vocab_size=vocab, mask_token_id=overrides.get("mask_token_id"))
    cfg = {
        "architectures": ["LLaDAModelLM"],
        "model_type": "llada",
        "auto_map": {
            "AutoConfig": "configuration_llada.LLaDAConfig",
            "AutoModel": "modeling_llada.LLaDAModelLM",
            "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        },
        "activation_type": "silu",
        "alibi": False,
        "attention_layer_norm": False,
        "block_group_size": 1,
        "block_type": "llama",
        "bias_for_layer_norm": False,
        "d_model": 64,
        "embedding_size": vocab,
        "include_bias": False,
        "include_qkv_bias": False,
        "input_emb_norm": False,
        "layer_norm_type": "rms",
        "layer_norm_with_affine": True,
        "max_sequence_length": 512,
        "mlp_hidden_size": 128,
        "mlp_ratio": 4,
        "n_heads": 4,
        "n_kv_heads": 4,
        "n_layers": 2,
        "rms_norm_eps": 1e-5,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": 500000.0,
        "scale_logits": False,
        "vocab_size": vocab,
        "weight_tying": False,
        "use_cache": False,
        "mask_token_id": ids["mask"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "bos_token_id": ids["bos"],
    }
    return {**cfg, **overrides}


def hub_keys(cfg: LLaDAConfig) -> list[str]:
    """Sorted parameter names of a hub checkpoint of `cfg`."""
    t = "model.transformer"
    keys = [f"{t}.wte.weight", f"{t}.ln_f.weight"] + ([] if cfg.weight_tying else [f"{t}.ff_out.weight"])
    for layer in range(cfg.n_layers):
        keys += [
            f"{t}.blocks.{layer}.{n}.weight"
            for n in ("attn_norm", "ff_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")
        ]
    return sorted(keys)


SPEC = FamilySpec(
    name="llada",
    model_types=("llada",),
    architectures=("LLaDAModelLM",),
    default_mask_id=MASK_ID,
    sampler="llada",
    recommended=RECOMMENDED,
    logits_shift=False,
    build_sites=build_sites,
    residual_writers=residual_writers,
    dims=dims,
    length_key="gen_length",
    position_key="max_sequence_length",
    generate=generate,
    fast=FastSupport(
        _fast_sampler,
        "mask_id",
        no_op={"cfg_scale": 0.0, "logits_eos_inf": False, "confidence_eos_eot_inf": False},
        prepare=_fast_prepare,
    ),
    build_model=build_model,
    size_fields=(
        "n_layers",
        "d_model",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "mlp_hidden_size",
        "max_sequence_length",
        "embedding_size",
        "mlp_ratio",
    ),
    tiny_config=tiny_config,
    tokenizer_style="llada",
    hub_keys=hub_keys,
)
