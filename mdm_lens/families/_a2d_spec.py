"""What the three A2D families (a2d_qwen3 / a2d_qwen2 / a2d_llama) share in their FamilySpec: sites, sizes, hub
keys, a tiny config, and `generate`, which runs dllm's MDLM or BD3LM sampler by the `variant` setting.

WHY a setting: dllm's MDLM and BD3LM checkpoints of one base model carry the same config.json (`model_type`
`a2d-qwen3`, ...); nothing in the checkpoint says which objective trained it. `variant` defaults to "mdlm";
pass `variant="bd3lm"` to `generate`, or write `"mdm_lens_sampler": {"variant": "bd3lm"}` into config.json
once (`HookedMDM.sampler_settings` merges it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..step_replay import block_causal_reason
from ._a2d import A2DConfig, A2DLMHeadModel
from ._layers import site_table
from .base import FamilySpec, Site

VARIANTS = ("mdlm", "bd3lm")
# dllm's examples/a2d/{mdlm,bd3lm}/sample.py (the same for both): 128 new tokens, 128 steps, blocks of 32,
# greedy, low-confidence remasking, no logit shift.
RECOMMENDED: dict[str, Any] = {
    "variant": "mdlm",
    "max_new_tokens": 128,
    "steps": 128,
    "block_size": 32,
    "temperature": 0.0,
    "remasking": "low_confidence",
    "right_shift_logits": False,
}
SIZE_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "intermediate_size",
    "max_position_embeddings",
    "head_dim",
)


def _cfg(model: nn.Module) -> A2DConfig:
    if not isinstance(model, A2DLMHeadModel):
        raise TypeError(f"expected the native A2D model (A2DLMHeadModel), got {type(model).__name__}")
    return model.cfg


def dims(model: nn.Module) -> dict[str, Any]:
    """Sizes in TransformerLens' words."""
    cfg = _cfg(model)
    return {
        "n_layers": cfg.num_hidden_layers,
        "d_model": cfg.hidden_size,
        "n_heads": cfg.num_attention_heads,
        "d_head": cfg.d_head,
        "n_kv_heads": cfg.kv_heads,
        "d_mlp": cfg.intermediate_size,
        "d_vocab": cfg.vocab_size,
        "n_ctx": cfg.max_position_embeddings,
        "eps": cfg.rms_norm_eps,
        "embed_weight": "model.embed_tokens.weight",
        "unembed_weight": "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight",
    }


def build_sites(model: nn.Module) -> list[Site]:
    b = "model.layers.{l}"
    paths: dict[str, str | tuple[str, str]] = {
        "embed_in": ("model.embed_tokens", "input"),
        "embed": "model.embed_tokens",
        "resid_pre": f"{b}.hook_resid_pre",
        "ln1_scale": f"{b}.input_layernorm.hook_scale",
        "ln1_normalized": f"{b}.input_layernorm.hook_normalized",
        "ln1_out": f"{b}.input_layernorm",
        **{
            r: f"{b}.self_attn.attn_hooks.hook_{r}"
            for r in ("q", "k", "v", "rot_q", "rot_k", "attn_scores", "pattern", "z")
        },
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
    if not _cfg(model).tie_word_embeddings:
        linears["logits"] = "lm_head"
    return site_table(dims(model), paths, linears)


def residual_writers(model: nn.Module) -> list[str]:
    out = ["model.embed_tokens"]
    for layer in range(_cfg(model).num_hidden_layers):
        out += [f"model.layers.{layer}.self_attn.o_proj", f"model.layers.{layer}.mlp.down_proj"]
    return out


def hub_keys(cfg: A2DConfig) -> list[str]:
    """Sorted parameter names of a converted checkpoint of `cfg` (transformers naming; tied: no lm_head)."""
    keys = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if cfg.tie_word_embeddings else ["lm_head.weight"])
    for layer in range(cfg.num_hidden_layers):
        pre = f"model.layers.{layer}"
        keys += [f"{pre}.input_layernorm.weight", f"{pre}.post_attention_layernorm.weight"]
        keys += [f"{pre}.self_attn.{n}_proj.weight" for n in "qkvo"]
        keys += [f"{pre}.self_attn.{n}_proj.bias" for n in "qkv" if cfg.qkv_bias]
        keys += [f"{pre}.self_attn.o_proj.bias"] if cfg.o_bias else []
        keys += [f"{pre}.self_attn.{n}_norm.weight" for n in "qk" if cfg.arch == "qwen3"]
        mlp_bias = cfg.mlp_bias and cfg.arch == "llama"
        for n in ("gate", "up", "down"):
            keys += [f"{pre}.mlp.{n}_proj.weight"] + ([f"{pre}.mlp.{n}_proj.bias"] if mlp_bias else [])
    return sorted(keys)


def model_builder(arch: str):
    def build_model(config: dict) -> A2DLMHeadModel:
        return A2DLMHeadModel(A2DConfig.from_dict(config, arch))

    return build_model


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
    """dllm's MDLM or BD3LM sampler (`settings["variant"]`) on the wrapper, laid out as `[left-padded prompt,
    response]` (what `HookedMDM.generate` slices); EOS / pad / BOS from the tokenizer."""
    from ..sampling.bd3lm import bd3lm_generate
    from ..sampling.common import check_kwargs
    from ..sampling.mdlm import mdlm_generate

    variant = settings.pop("variant", "mdlm")
    if variant not in VARIANTS:
        raise ValueError(
            f"variant={variant!r} is not an A2D sampler; use one of {VARIANTS} (the checkpoint's objective)"
        )
    fn = mdlm_generate if variant == "mdlm" else bd3lm_generate
    fixed = {"model", "prompts", "attention_mask", "on_step", "trace", "return_history", "left_layout"}
    fixed |= {"eos_id", "pad_id", "bos_id"}
    check_kwargs(fn, settings, fixed)
    settings.setdefault("mask_id", model.mask_id)
    eos = special["eos"]
    if eos is None:
        raise ValueError("the A2D samplers need an EOS id (MDLM pads the canvas with it): give the tokenizer one")
    ids = {"eos_id": eos, "pad_id": special["pad"], "bos_id": model.config.get("bos_token_id")}
    return fn(
        model,
        input_ids,
        attention_mask=attention_mask,
        left_layout=True,
        on_step=on_step,
        trace=trace,
        **ids,
        **settings,
    )


def tiny_config(arch: str, model_type: str, architecture: str, style: str, **overrides: Any) -> dict[str, Any]:
    """config.json of a tiny converted checkpoint (d 64, 2 layers, vocab 320), as dllm's convert.py saves it."""
    from ..tiny_tokenizer import tiny_token_ids

    vocab = overrides.get("vocab_size", 320)
    ids = tiny_token_ids(style, vocab_size=vocab, mask_token_id=overrides.get("mask_token_id"))
    cfg: dict[str, Any] = {
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_act": "silu",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "tie_word_embeddings": False,  # tied tiny random models predict their input (the mask) back; goldens test tying
        "attention_bias": False,
        "use_cache": False,
        "vocab_size": vocab,
        "mask_token_id": ids["mask"],
        "pad_token_id": ids["pad"],
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
    }
    if arch == "qwen3":
        cfg["head_dim"] = 32  # != hidden / heads, as in Qwen3-0.6B
    if arch == "llama":
        cfg.update(rope_theta=500000.0, rms_norm_eps=1e-5, mlp_bias=False)
    return {**cfg, **overrides}


def step_forward_refusal(name: str, settings: dict[str, Any]) -> str | None:
    """MDLM runs full forwards over `[prompt, response]` (padding masked): a full forward replays its steps.
    BD3LM is block-causal over a growing window: refused, with the reason."""
    if settings.get("variant", "mdlm") == "bd3lm":
        return block_causal_reason(name, "BD3LM (variant='bd3lm')")
    return None


def make_spec(name: str, arch: str, model_type: str, architecture: str, mask_id: int, style: str) -> FamilySpec:
    """The FamilySpec of one A2D family; `mask_id` is only the fallback (config, then tokenizer, win)."""

    def tiny(**overrides: Any) -> dict[str, Any]:
        return tiny_config(arch, model_type, architecture, style, **overrides)

    return FamilySpec(
        name=name,
        model_types=(model_type,),
        architectures=(architecture,),
        default_mask_id=mask_id,
        sampler="mdlm",
        recommended=RECOMMENDED,
        logits_shift=False,
        build_sites=build_sites,
        residual_writers=residual_writers,
        dims=dims,
        length_key="max_new_tokens",
        position_key="max_position_embeddings",
        generate=generate,
        step_forward_refusal=lambda settings: step_forward_refusal(name, settings),
        replay_refusal=(
            "dllm's MDLM / BD3LM samplers take no recorded unmasking schedule: replay= is implemented in the "
            "LLaDA and Dream samplers only"
        ),
        build_model=model_builder(arch),
        size_fields=SIZE_FIELDS,
        heads_split_width=False,  # head_dim may be given (Qwen3-0.6B: 16 heads x 128 over width 1024)
        tiny_config=tiny,
        tokenizer_style=style,
        hub_keys=hub_keys,
    )
