"""Random-weight checkpoints in hub layout, written tensor chunk by tensor chunk (never the model in RAM).

`mdm-lens bench load` and `scripts/check_big_load.py` need an 8B- or 16B-shaped checkpoint on disk to prove the
load path without downloading one. `save_pretrained` would hold the whole state dict; this writer streams the
safetensors format itself (8-byte header length, JSON header, raw little-endian bytes) so its peak memory is one
chunk, whatever the model size. The key names and shapes come from the family's own module built on the meta
device, so the checkpoint matches the layout `load_model` expects (tied aliases are left out, as on the hub).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mdm_lens.families import detect_family
from mdm_lens.loading import build_meta_model
from mdm_lens.safefile import write_atomic, write_text_atomic

__all__ = ["SHAPES", "hub_layout", "write_random_checkpoint", "weight_bytes"]

# config.json of GSAI-ML/LLaDA-8B-Instruct (the fields that shape the weights; tests/test_families.py holds the same)
LLADA_8B: dict[str, Any] = {
    "model_type": "llada",
    "architectures": ["LLaDAModelLM"],
    "d_model": 4096,
    "n_heads": 32,
    "n_kv_heads": 32,
    "n_layers": 32,
    "mlp_hidden_size": 12288,
    "vocab_size": 126464,
    "embedding_size": 126464,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "mask_token_id": 126336,
    "include_bias": False,
    "weight_tying": False,
    "block_type": "llama",
    "layer_norm_type": "rms",
}
# A 0.4 GB LLaDA (bf16) for the default bench: big enough that the ratios are not dominated by Python objects.
LLADA_MID: dict[str, Any] = {**LLADA_8B, "d_model": 1024, "n_heads": 8, "n_kv_heads": 8, "n_layers": 8}
LLADA_MID.update(mlp_hidden_size=4096, vocab_size=32768, embedding_size=32768, mask_token_id=32000)
# config.json of inclusionAI/LLaDA2.0-mini (16B total, 1.4B active). Values as published in the hub config.json of
# LLaDA2.1-mini and of DMax-Math-16B (a LLaDA2.0-mini fine-tune, same shapes); vocab_size 157184 is the text
# vocabulary that LLaDA2.0-Uni's config names as its image_token_offset. dllm's configuration file only has
# generic defaults (hidden 1024, 16 experts).
LLADA2_MINI: dict[str, Any] = {
    "model_type": "llada2_moe",
    "architectures": ["LLaDA2MoeModelLM"],
    "vocab_size": 157184,
    "hidden_size": 2048,
    "intermediate_size": 5120,
    "moe_intermediate_size": 512,
    "num_hidden_layers": 20,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 256,
    "num_experts_per_tok": 8,
    "num_shared_experts": 1,
    "n_group": 8,
    "topk_group": 4,
    "first_k_dense_replace": 1,
    "routed_scaling_factor": 2.5,
    "score_function": "sigmoid",
    "moe_router_enable_expert_bias": True,
    "norm_topk_prob": True,
    "router_dtype": "fp32",
    "use_qkv_bias": False,
    "use_qk_norm": True,
    "use_bias": False,
    "norm_head": False,
    "rms_norm_eps": 1e-6,
    "rope_theta": 600000,
    "partial_rotary_factor": 0.5,
    "rotary_dim": 64,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
    "pad_token_id": 156892,
    "mask_token_id": 156895,
}
SHAPES: dict[tuple[str, str], dict[str, Any]] = {
    ("llada", "8b"): LLADA_8B,
    ("llada", "mid"): LLADA_MID,
    ("llada2", "mini"): LLADA2_MINI,
}
_SF_CODE = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


def hub_layout(config: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Key -> (shape, dtype) of the checkpoint the family loads, from its module built on the meta device."""
    spec = detect_family(config)
    if spec.build_model is None:
        raise ValueError(f"the {spec.name} family is served by transformers' loader; no native layout to write")
    model = build_meta_model(config, spec)
    tied = set(getattr(model, "tied_keys", lambda: {})())
    return {k: (tuple(v.shape), v.dtype) for k, v in sorted(model.state_dict().items()) if k not in tied}


def weight_bytes(layout: dict[str, tuple[tuple[int, ...], torch.dtype]], dtype: torch.dtype) -> int:
    return sum(_numel(shape) * dtype.itemsize for shape, _ in layout.values())


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _shards(layout: dict, dtype: torch.dtype, shard_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for key, (shape, _) in layout.items():
        n = _numel(shape) * dtype.itemsize
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += n
    return shards


class _Filler:
    """Values for a tensor: norms 1, other vectors 0, matrices N(0, 0.02) cut from one seeded pool at a random
    offset (weights need not be independent to prove a load path; a pool keeps 16B of writing disk-bound)."""

    def __init__(self, seed: int, dtype: torch.dtype, pool: int = 1 << 24):
        self.gen = torch.Generator().manual_seed(seed)
        self.pool = (torch.randn(2 * pool, generator=self.gen) * 0.02).to(dtype)
        self.size = pool

    def chunks(self, key: str, shape: tuple[int, ...], dtype: torch.dtype):
        n = _numel(shape)
        if len(shape) == 1:
            yield torch.full((n,), 1.0 if "norm" in key else 0.0, dtype=dtype)
            return
        for start in range(0, n, self.size):
            m = min(self.size, n - start)
            off = int(torch.randint(0, self.size, (1,), generator=self.gen))
            yield self.pool[off : off + m]


def _write_shard(path: Path, keys: list[str], layout: dict, dtype: torch.dtype, filler: _Filler, bar) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key in keys:
        n = _numel(layout[key][0]) * dtype.itemsize
        header[key] = {"dtype": _SF_CODE[dtype], "shape": list(layout[key][0]), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header so tensor data is 8-byte aligned

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for key in keys:
                for chunk in filler.chunks(key, layout[key][0], dtype):
                    f.write(chunk.contiguous().view(torch.uint8).numpy().tobytes())
                    bar.update(chunk.numel() * dtype.itemsize)

    write_atomic(path, write)


def write_random_checkpoint(
    folder: str | os.PathLike,
    config: dict,
    dtype: torch.dtype = torch.bfloat16,
    shard_bytes: int = 5 * 2**30,
    seed: int = 0,
) -> dict[str, Any]:
    """Write config.json + `model-0000i-of-0000n.safetensors` + index (hub layout) with seeded random weights.

    Peak memory is one pool of 16M values plus one chunk, whatever the model size. Returns
    {"folder", "weight_bytes", "n_tensors", "n_shards"}."""
    if dtype not in _SF_CODE:
        raise ValueError(f"dtype={dtype} cannot be written; use one of {list(_SF_CODE)}")
    if shard_bytes < 1:
        raise ValueError(f"shard_bytes={shard_bytes} must be >= 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layout = hub_layout(config)
    total = weight_bytes(layout, dtype)
    shards = _shards(layout, dtype, shard_bytes)
    filler = _Filler(seed, dtype)
    weight_map = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="writing checkpoint") as bar:
        for i, keys in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            _write_shard(folder / name, keys, layout, dtype, filler, bar)
            weight_map.update({k: name for k in keys})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    write_text_atomic(json.dumps(index, indent=1), folder / "model.safetensors.index.json")
    dtype_name = str(dtype).removeprefix("torch.")
    write_text_atomic(json.dumps({**config, "torch_dtype": dtype_name}, indent=2), folder / "config.json")
    return {"folder": str(folder), "weight_bytes": total, "n_tensors": len(layout), "n_shards": len(shards)}
