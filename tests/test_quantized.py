"""Row-wise int8 checkpoints (how smol-mdm ships): round trip within half a step, refusals on damage."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mdm_lens.loading import build_random_model, load_model, save_pretrained
from mdm_lens.quantized import CONFIG_KEY, SCALE_SUFFIX, quantization_error, quantize_state
from mdm_lens.testing import build_test_tokenizer, tiny_config


@pytest.fixture()
def int8_folder(tmp_path):
    cfg = tiny_config("llada")
    model = build_random_model(cfg, seed=4)
    save_pretrained(model, build_test_tokenizer(style="llada", vocab_size=cfg["vocab_size"]), cfg, tmp_path, int8=True)
    return tmp_path, model


def test_int8_round_trip_within_half_a_step(int8_folder):
    folder, model = int8_folder
    saved = load_file(str(folder / "model.safetensors"))
    assert json.loads((folder / "config.json").read_text())[CONFIG_KEY] == "int8-rowwise"
    loaded, *_ = load_model(folder)
    assert next(loaded.parameters()).dtype == torch.float32  # scales and norms are float32
    ref = model.state_dict()
    for key, w in loaded.state_dict().items():
        if saved[key].dtype == torch.int8:
            step = saved[key + SCALE_SUFFIX][:, None]
            assert ((w - ref[key]).abs() <= step / 2 + 1e-7).all(), key
        else:
            assert torch.equal(w, ref[key]), key
    ids = torch.randint(3, 250, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(ids), loaded(ids)
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    int8_bytes = sum(t.numel() for t in saved.values() if t.dtype == torch.int8)
    assert int8_bytes > 0.9 * sum(t.numel() for k, t in ref.items() if t.ndim == 2)


def test_quantization_error_bound():
    w = {"a.weight": torch.randn(5, 7, generator=torch.Generator().manual_seed(1))}
    assert 0 < quantization_error(w)["a.weight"] <= 1 / 254 + 1e-7


def test_damaged_or_unknown_scheme_refused(int8_folder):
    folder, _ = int8_folder
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(cfg | {CONFIG_KEY: "int4-grouped"}))
    with pytest.raises(ValueError, match="int4-grouped.*only 'int8-rowwise'"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k, t in state.items() if t.dtype == torch.int8)
    del state[key + SCALE_SUFFIX]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=f"{key}.*needs a float32"):
        load_model(folder)


def test_nan_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        quantize_state({"w": torch.tensor([[1.0, float("nan")]])})
    cfg = tiny_config("llada")
    model = build_random_model(cfg, seed=4)
    with torch.no_grad():
        next(p for p in model.parameters() if p.ndim == 2)[0, 0] = float("nan")
    tok = build_test_tokenizer(style="llada", vocab_size=cfg["vocab_size"])
    with pytest.raises(ValueError, match="NaN"):
        save_pretrained(model, tok, cfg, tmp_path / "out", int8=True)
    assert not [p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]  # nothing written
