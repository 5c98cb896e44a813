"""Regenerate tests/fixtures/{llada,dream}_golden.safetensors from the *original* hub modeling code.

    python scripts/make_model_goldens.py --llada-ref DIR --dream-ref DIR [--out tests/fixtures]

DIR is a folder holding the hub's remote code: `modeling_llada.py` + `configuration_llada.py`
(GSAI-ML/LLaDA-8B-Instruct) or `modeling_dream.py` + `configuration_dream.py` + `generation_utils.py`
(Dream-org/Dream-v0-Instruct-7B). That code targets transformers 4.x (Dream: 4.46.2), so run this script in
an environment with transformers 4.4x. This repository contains none of it: the script only imports it.

Each fixture holds a tiny seeded model's weights (rounded to bf16, stored as bf16, run in float32), input
ids, a left-padding attention mask, and the reference logits for the two calls each reference sampler
makes: without padding and with padding (LLaDA generate.py: `model(x, attention_mask=m)`; Dream
diffusion_generate: `model(x, mask4d, tok_idx)` with tok_idx = cumsum(m) - 1). Config is in the metadata.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

LLADA_CONFIG = {
    "model_type": "llada",
    "architectures": ["LLaDAModelLM"],
    "activation_type": "silu",
    "alibi": False,
    "attention_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "bias_for_layer_norm": False,
    "d_model": 32,
    "embedding_size": 128,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_device": "cpu",
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "max_sequence_length": 64,
    "mlp_hidden_size": 64,
    "mlp_ratio": 4,
    "n_heads": 4,
    "n_kv_heads": 2,
    "n_layers": 2,
    "rms_norm_eps": 1e-5,
    "rope": True,
    "rope_full_precision": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "vocab_size": 128,
    "weight_tying": False,
    "flash_attention": False,
    "mask_token_id": 127,
    "eos_token_id": 120,
    "pad_token_id": 120,
    "use_cache": False,
}
DREAM_CONFIG = {
    "model_type": "Dream",
    "architectures": ["DreamModel"],
    "hidden_act": "silu",
    "hidden_size": 32,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "vocab_size": 128,
    "mask_token_id": 127,
    "pad_token_id": 120,
    "use_cache": False,
}


def import_ref(folder: str, family: str, module: str) -> types.ModuleType:
    """Import `module` from `folder`, loaded as one package per family (the hub files use relative imports)."""
    pkg = f"_ref_{family}"
    if pkg not in sys.modules:
        spec = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [str(Path(folder).resolve())]
        sys.modules[pkg] = package
        sys.path.insert(0, str(Path(folder).resolve()))  # copies that use absolute imports
    return importlib.import_module(f"{pkg}.{module}")


def seeded_weights(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Weights large enough to matter (std 0.1 matrices, perturbed norms, biases), rounded to bf16."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in sorted(model.state_dict().items()):
        noise = torch.randn(p.shape, generator=gen)
        if "norm" in name or "ln_f" in name:
            w = 1.0 + 0.1 * noise
        elif name.endswith("bias"):
            w = 0.1 * noise
        else:
            w = 0.1 * noise
        out[name] = w.to(torch.bfloat16)
    return out


def inputs(seed: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 8, (2, 12), generator=gen)
    ids[:, 8:] = vocab - 1  # masked generation part, as in a sampler step
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :3] = 0  # left padding of the second prompt
    return ids, mask


def make_llada(folder: str) -> dict[str, torch.Tensor]:
    mod = import_ref(folder, "llada", "modeling_llada")
    cfg_mod = import_ref(folder, "llada", "configuration_llada")
    cfg = cfg_mod.LLaDAConfig(**{k: v for k, v in LLADA_CONFIG.items() if k not in ("model_type", "architectures")})
    ref = mod.LLaDAModelLM(cfg, init_params=False).eval()
    weights = seeded_weights(ref, 0)
    ref.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    ids, mask = inputs(1, LLADA_CONFIG["vocab_size"])
    with torch.no_grad():
        plain = ref(input_ids=ids).logits
        padded = ref(input_ids=ids, attention_mask=mask).logits
    return {**weights, "__input_ids": ids, "__attention_mask": mask, "__logits": plain, "__logits_padded": padded}


def make_dream(folder: str) -> dict[str, torch.Tensor]:
    mod = import_ref(folder, "dream", "modeling_dream")
    cfg_mod = import_ref(folder, "dream", "configuration_dream")
    cfg = cfg_mod.DreamConfig(**{k: v for k, v in DREAM_CONFIG.items() if k not in ("model_type", "architectures")})
    ref = mod.DreamModel(cfg).eval()
    weights = seeded_weights(ref, 0)
    ref.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    ids, mask = inputs(1, DREAM_CONFIG["vocab_size"])
    tok_idx = mask.long().cumsum(-1) - 1  # exactly as generation_utils._sample builds them
    tok_idx.masked_fill_(mask == 0, 1)
    mask4 = torch.logical_and(mask.unsqueeze(1).unsqueeze(-2), mask.unsqueeze(1).unsqueeze(-1))
    with torch.no_grad():
        plain = ref(ids, "full", None).logits
        padded = ref(ids, mask4, tok_idx).logits
    return {**weights, "__input_ids": ids, "__attention_mask": mask, "__logits": plain, "__logits_padded": padded}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llada-ref", help="folder with the hub's modeling_llada.py + configuration_llada.py")
    ap.add_argument("--dream-ref", help="folder with the hub's modeling_dream.py + configuration_dream.py")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [("llada", args.llada_ref, make_llada, LLADA_CONFIG), ("dream", args.dream_ref, make_dream, DREAM_CONFIG)]
    for name, folder, make, config in jobs:
        if not folder:
            continue
        tensors = {k: v.contiguous() for k, v in make(folder).items()}
        path = out / f"{name}_golden.safetensors"
        save_file(tensors, str(path), metadata={"config": json.dumps(config), "source": f"{name} hub remote code"})
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
