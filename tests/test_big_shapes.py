"""The big-model load path without the big model: LLaDA2.0-mini's (16B) meta layout against the hub key pattern,
the streamed random-checkpoint writer, and the zero-copy mapped safetensors reader (views, checked headers)."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open

from analyses.bench.bigckpt import LLADA2_MINI, hub_layout, weight_bytes, write_random_checkpoint
from analyses.bench.load import count_mapped
from mdm_lens.loading import load_model
from mdm_lens.mapped_safetensors import MappedSafetensors
from mdm_lens.testing import tiny_config

# LLaDA2.0-mini's hub checkpoint (modeling_llada2_moe.py naming): layer 0 dense (first_k_dense_replace=1),
# layers 1-19 MoE with 256 routed experts + 1 shared expert and a biased sigmoid router.
ATTN = ["attention.dense", "attention.key_layernorm", "attention.query_key_value", "attention.query_layernorm"]
NORMS = ["input_layernorm", "post_attention_layernorm"]
FFN = ["down_proj", "gate_proj", "up_proj"]


def _mini_keys() -> set[str]:
    keys = {"model.word_embeddings.weight", "model.norm.weight", "lm_head.weight"}
    for layer in range(20):
        p = f"model.layers.{layer}."
        keys |= {f"{p}{n}.weight" for n in ATTN + NORMS}
        if layer == 0:
            keys |= {f"{p}mlp.{f}.weight" for f in FFN}
            continue
        keys |= {f"{p}mlp.gate.weight", f"{p}mlp.gate.expert_bias"}
        keys |= {f"{p}mlp.shared_experts.{f}.weight" for f in FFN}
        keys |= {f"{p}mlp.experts.{e}.{f}.weight" for e in range(256) for f in FFN}
    return keys


def test_llada2_mini_meta_layout_matches_hub_keys():
    pytest.importorskip("mdm_lens.families.llada2")
    layout = hub_layout(LLADA2_MINI)
    assert set(layout) == _mini_keys() and len(layout) == 14813
    assert layout["model.layers.1.attention.query_key_value.weight"][0] == ((16 + 2 * 4) * 128, 2048)
    assert layout["model.layers.5.mlp.experts.255.gate_proj.weight"][0] == (512, 2048)
    assert layout["model.layers.0.mlp.up_proj.weight"][0] == (5120, 2048)
    assert layout["model.word_embeddings.weight"][0] == (157184, 2048)
    assert 32.4e9 < weight_bytes(layout, torch.bfloat16) < 32.6e9  # 16.26B parameters in bf16


def test_streamed_checkpoint_loads_as_views(tmp_path):
    cfg = tiny_config("llada")
    info = write_random_checkpoint(tmp_path, cfg, shard_bytes=40_000, seed=1)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert info["n_shards"] > 1 and index["metadata"]["total_size"] == info["weight_bytes"]
    for shard in set(index["weight_map"].values()):  # the format is what safetensors itself reads
        with safe_open(str(tmp_path / shard), "pt") as f:
            assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())
    model, *_ = load_model(tmp_path, dtype=torch.bfloat16)
    params = list(model.parameters())
    assert count_mapped(params) == len(params)
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[3, 4, 5, 6]])).float()).all()


def test_mapped_reader_equals_safetensors_and_keeps_file_intact(tmp_path):
    write_random_checkpoint(tmp_path, tiny_config("llada"), seed=2)
    shard = next(tmp_path.glob("*.safetensors"))
    before = shard.read_bytes()
    with MappedSafetensors(shard, "a checkpoint shard") as f, safe_open(str(shard), "pt") as ref:
        assert sorted(f.keys()) == sorted(ref.keys())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        for k, t in tensors.items():
            assert torch.equal(t, ref.get_tensor(k)), k  # same bytes: exact
    tensors[next(iter(tensors))].add_(1.0)  # an in-place edit (a fold) copies the page, never the file
    assert shard.read_bytes() == before


@pytest.mark.parametrize(
    "header, match",
    [
        (b"not json", "not JSON"),
        (json.dumps({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 6]}}).encode(), "does not fit"),
        (json.dumps({"w": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 8]}}).encode(), "malformed"),
    ],
)
def test_mapped_reader_names_damaged_headers(tmp_path, header, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(ValueError, match=match) as err:
        MappedSafetensors(path, "a checkpoint shard")
    assert str(path) in str(err.value)
