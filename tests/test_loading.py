"""Hub-layout save/load, sharding, strict keys, dtype, device maps, the offline test tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mdm_lens.loading import build_random_model, load_model, resolve_mask_id, save_pretrained
from mdm_lens.testing import build_test_tokenizer, tiny_config


def _ids(n: int = 9) -> torch.Tensor:
    return torch.randint(3, 250, (2, n), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One tiny llada and one tiny (tied) dream checkpoint, single-file and sharded."""
    out = {}
    for family, over in (("llada", {}), ("dream", {"tie_word_embeddings": True})):
        cfg = tiny_config(family, **over)
        model = build_random_model(cfg, seed=3)
        tok = build_test_tokenizer(style=family, vocab_size=cfg["vocab_size"])
        for shard in (None, 60_000):
            folder = tmp_path_factory.mktemp(f"{family}_{shard}")
            save_pretrained(model, tok, cfg, folder, shard_size=shard)
            out[(family, shard)] = (folder, model, cfg)
    return out


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("shard", [None, 60_000])
def test_save_reload_same_logits(saved, family, shard):
    folder, model, cfg = saved[(family, shard)]
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    if shard is None:
        assert files == ["model.safetensors"]
    else:
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        assert len(files) > 1 and sorted(set(index["weight_map"].values())) == files
        assert index["metadata"]["total_size"] > 0
    loaded, tok, spec, config = load_model(folder)
    assert spec.name == family and not loaded.training
    assert config["mask_token_id"] == cfg["mask_token_id"] == tok.mask_token_id
    with torch.no_grad():
        torch.testing.assert_close(loaded(_ids()), model(_ids()), rtol=0, atol=0)


def test_tied_dream_checkpoint_has_no_lm_head(saved):
    folder, _, _ = saved[("dream", None)]
    assert "lm_head.weight" not in load_file(str(folder / "model.safetensors"))
    loaded, *_ = load_model(folder)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_dtype_and_no_meta_left(saved):
    folder, model, _ = saved[("llada", 60_000)]
    loaded, *_ = load_model(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(_ids()).float(), model(_ids()), atol=0.05, rtol=0.05)


def test_device_map_dict_on_cpu(saved):
    folder, model, _ = saved[("llada", None)]
    t = "model.transformer"
    dmap = {f"{t}.wte": "cpu", f"{t}.blocks.0": "cpu", f"{t}.blocks.1": "cpu", f"{t}.ln_f": "cpu", f"{t}.ff_out": "cpu"}
    loaded, *_ = load_model(folder, device_map=dmap)
    assert loaded.hf_device_map == dmap
    with torch.no_grad():
        torch.testing.assert_close(loaded(_ids()), model(_ids()))
    with pytest.raises(KeyError, match="places no module"):
        load_model(folder, device_map={f"{t}.wte": "cpu"})
    auto, *_ = load_model(folder, device_map="auto")
    with torch.no_grad():
        torch.testing.assert_close(auto(_ids()), model(_ids()))


def test_strict_key_check_names_the_keys(saved, tmp_path):
    folder, _, cfg = saved[("llada", None)]
    state = load_file(str(folder / "model.safetensors"))
    state.pop("model.transformer.blocks.1.up_proj.weight")
    state["model.transformer.blocks.0.extra.weight"] = torch.zeros(2)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(KeyError) as err:
        load_model(tmp_path)
    assert "blocks.1.up_proj.weight" in str(err.value) and "blocks.0.extra.weight" in str(err.value)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(tiny_config("llada")))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "nope"))


def test_mask_id_preference():
    from mdm_lens.families import FAMILIES

    tok = build_test_tokenizer(style="llada", vocab_size=320, mask_token_id=300)
    assert resolve_mask_id({"mask_token_id": 17}, tok, FAMILIES["llada"]) == 17
    assert resolve_mask_id({}, tok, FAMILIES["llada"]) == 300
    assert resolve_mask_id({}, None, FAMILIES["llada"]) == 126336
    assert resolve_mask_id({}, None, FAMILIES["dream"]) == 151666


@pytest.mark.parametrize("style", ["llada", "dream"])
def test_test_tokenizer(style, tmp_path):
    cfg = tiny_config(style)
    tok = build_test_tokenizer(style=style, vocab_size=cfg["vocab_size"])
    assert tok.mask_token_id == cfg["mask_token_id"] and tok.eos_token_id == cfg["eos_token_id"]
    assert len(tok) == cfg["vocab_size"]
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Write a poem about the sun."}], add_generation_prompt=True, tokenize=False
    )
    marker = "<|start_header_id|>assistant<|end_header_id|>" if style == "llada" else "<|im_start|>assistant"
    assert text.rstrip().endswith(marker)
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids and max(ids) < cfg["vocab_size"]
    tok.save_pretrained(str(tmp_path))
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert again(text)["input_ids"] == ids and again.mask_token_id == tok.mask_token_id
    with pytest.raises(ValueError, match="mask id"):
        build_test_tokenizer(style=style, vocab_size=100)


def test_random_model_is_seeded():
    cfg = tiny_config("dream")
    a, b, c = build_random_model(cfg, seed=1), build_random_model(cfg, seed=1), build_random_model(cfg, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(a(_ids()), b(_ids()))
        assert (a(_ids()) - c(_ids())).abs().max() > 1e-4


def test_diffusion_gemma_roundtrip(tmp_path):
    cfg = tiny_config("diffusion_gemma")
    model = build_random_model(cfg, seed=0)
    save_pretrained(model, None, cfg, tmp_path, shard_size=200_000)
    loaded, tok, spec, config = load_model(tmp_path)
    assert spec.name == "diffusion_gemma" and tok is None
    ids = _ids(14)
    with torch.no_grad():
        out = loaded(ids)
        torch.testing.assert_close(out, model(ids), atol=1e-5, rtol=1e-5)
    canvas = cfg["canvas_length"]
    assert out.shape == (2, 14, cfg["text_config"]["vocab_size"])
    assert out[:, :-canvas].abs().max() == 0 and out[:, -canvas:].abs().max() > 0
