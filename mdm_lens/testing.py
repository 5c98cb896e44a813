"""Helpers for testing code built on mdm-lens, offline and in seconds: the same ones our own tests use.

- `tiny_config(family)`: a config.json dict of a tiny model (d 64, 2 layers) in the family's own field names;
  `HookedMDM.from_config(tiny_config("llada"))` is a random model of that family.
- `build_test_tokenizer(style=...)`: a word-level `PreTrainedTokenizerFast` with the family's special tokens
  and chat template, whose ids agree with `tiny_config`; nothing touches the network.
- `tiny_model(family)`: both together, as a `HookedMDM`.
- `save_tiny_checkpoint(folder, family)`: a random tiny model written in hub layout (config.json,
  safetensors, tokenizer files), loadable by `HookedMDM.from_pretrained(folder)` and the CLI.
- `hub_key_names(family, cfg)`: the parameter names a hub checkpoint of that config holds.

    from mdm_lens.testing import tiny_model
    model = tiny_model("llada")
    out = model.generate(["hello world"], gen_length=8, steps=8, block_length=8)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .tiny_tokenizer import build_test_tokenizer, tiny_token_ids

TOKENIZER_STYLE = {"llada": "llada", "dream": "dream"}      # families whose tiny models have an offline tokenizer


def _llada(**overrides: Any) -> dict[str, Any]:
    """Field set of GSAI-ML/LLaDA-8B-Instruct's config.json, small sizes."""
    vocab = overrides.get("vocab_size", 320)
    ids = tiny_token_ids("llada", vocab_size=vocab, mask_token_id=overrides.get("mask_token_id"))
    cfg = {"architectures": ["LLaDAModelLM"], "model_type": "llada",
           "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                        "AutoModel": "modeling_llada.LLaDAModelLM",
                        "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
           "activation_type": "silu", "alibi": False, "attention_layer_norm": False, "block_group_size": 1,
           "block_type": "llama", "bias_for_layer_norm": False, "d_model": 64, "embedding_size": vocab,
           "include_bias": False, "include_qkv_bias": False, "input_emb_norm": False, "layer_norm_type": "rms",
           "layer_norm_with_affine": True, "max_sequence_length": 512, "mlp_hidden_size": 128, "mlp_ratio": 4,
           "n_heads": 4, "n_kv_heads": 4, "n_layers": 2, "rms_norm_eps": 1e-5, "rope": True,
           "rope_full_precision": True, "rope_theta": 500000.0, "scale_logits": False, "vocab_size": vocab,
           "weight_tying": False, "use_cache": False, "mask_token_id": ids["mask"],
           "eos_token_id": ids["eos"], "pad_token_id": ids["pad"], "bos_token_id": ids["bos"]}
    return {**cfg, **overrides}


def _dream(**overrides: Any) -> dict[str, Any]:
    """Field set of Dream-org/Dream-v0-Instruct-7B's config.json, small sizes."""
    vocab = overrides.get("vocab_size", 320)
    ids = tiny_token_ids("dream", vocab_size=vocab, mask_token_id=overrides.get("mask_token_id"))
    cfg = {"architectures": ["DreamModel"], "model_type": "Dream",
           "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
           "attention_dropout": 0.0, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
           "intermediate_size": 128, "max_position_embeddings": 512, "max_window_layers": 2,
           "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
           "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
           "use_cache": False, "use_sliding_window": False, "vocab_size": vocab, "mask_token_id": ids["mask"],
           "pad_token_id": ids["pad"], "bos_token_id": ids["bos"], "eos_token_id": ids["eos"]}
    return {**cfg, **overrides}


def _diffusion_gemma(**overrides: Any) -> dict[str, Any]:
    """transformers' DiffusionGemmaConfig: 2 text layers, MoE with 4 experts, a 1-layer vision tower."""
    from transformers import DiffusionGemmaConfig
    text = {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "global_head_dim": 32,
            "num_global_key_value_heads": 1, "sliding_window": 16, "num_experts": 4, "top_k_experts": 2,
            "moe_intermediate_size": 32, "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 512, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}
    text.update(overrides.pop("text_config", {}))
    vision = {"model_type": "gemma4_vision", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "position_embedding_size": 64}
    cfg = DiffusionGemmaConfig(text_config=text, vision_config=vision, canvas_length=8).to_dict()
    cfg["architectures"] = ["DiffusionGemmaForBlockDiffusion"]
    cfg.pop("transformers_version", None)
    return {**cfg, **overrides}


_CONFIGS = {"llada": _llada, "dream": _dream, "diffusion_gemma": _diffusion_gemma}


def tiny_config(family: str = "llada", **overrides: Any) -> dict[str, Any]:
    """config.json-style dict of a tiny model (d 64, 2 layers, 4 heads, vocab 320) in the family's own field
    names, token ids matching `build_test_tokenizer(style=family)`; `overrides` replace fields."""
    if family not in _CONFIGS:
        raise ValueError(f"no tiny config for family {family!r}; use one of {sorted(_CONFIGS)}")
    return _CONFIGS[family](**overrides)


def tiny_model(family: str = "llada", seed: int = 0, **overrides: Any):
    """A random tiny `HookedMDM` of `family`, with the offline tokenizer where the family has one."""
    from .hooked import HookedMDM
    cfg = tiny_config(family, **overrides)
    tok = (build_test_tokenizer(style=TOKENIZER_STYLE[family], vocab_size=cfg["vocab_size"])
           if family in TOKENIZER_STYLE else None)
    return HookedMDM.from_config(cfg, tokenizer=tok, seed=seed)


def save_tiny_checkpoint(folder: str | os.PathLike, family: str = "llada", seed: int = 0,
                         shard_size: int | None = None, **overrides: Any) -> Path:
    """Write a random tiny model of `family` in hub layout into `folder`; returns the folder."""
    from .loading import save_pretrained
    model = tiny_model(family, seed=seed, **overrides)
    save_pretrained(model.model, model.tokenizer, model.config, folder, shard_size=shard_size)
    return Path(folder)


def hub_key_names(family: str, cfg) -> list[str]:
    """Sorted parameter names of a hub checkpoint of `cfg` (the family's parsed config object)."""
    if family == "llada":
        t = "model.transformer"
        keys = [f"{t}.wte.weight", f"{t}.ln_f.weight"] + ([] if cfg.weight_tying else [f"{t}.ff_out.weight"])
        for layer in range(cfg.n_layers):
            keys += [f"{t}.blocks.{layer}.{n}.weight" for n in ("attn_norm", "ff_norm", "q_proj", "k_proj",
                                                                 "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")]
        return sorted(keys)
    if family == "dream":          # Qwen2 naming
        keys = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if cfg.tie_word_embeddings else ["lm_head.weight"])
        for layer in range(cfg.num_hidden_layers):
            pre = f"model.layers.{layer}"
            keys += [f"{pre}.input_layernorm.weight", f"{pre}.post_attention_layernorm.weight",
                     f"{pre}.self_attn.o_proj.weight", f"{pre}.mlp.gate_proj.weight", f"{pre}.mlp.up_proj.weight",
                     f"{pre}.mlp.down_proj.weight"]
            keys += [f"{pre}.self_attn.{n}_proj.{w}" for n in "qkv" for w in ("weight", "bias")]
        return sorted(keys)
    raise ValueError(f"no hub key list for family {family!r}; use 'llada' or 'dream'")


__all__ = ["tiny_config", "tiny_model", "save_tiny_checkpoint", "build_test_tokenizer", "tiny_token_ids",
           "hub_key_names"]
