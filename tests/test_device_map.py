"""device_map on a CPU-only machine: cpu-only maps load and run; bad maps fail before any weight is read, naming
the entry, the valid values and the fix. Also: a load is a view of the checkpoint's file mapping (no copy)."""

from __future__ import annotations

import pytest
import torch

from analyses.bench.load import count_mapped
from mdm_lens.device_map import resolve_device_map
from mdm_lens.families import detect_family
from mdm_lens.loading import build_random_model, load_model, save_pretrained
from mdm_lens.testing import build_test_tokenizer, tiny_config

T = "model.transformer"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = tiny_config("llada")
    model = build_random_model(cfg, seed=5).to(torch.bfloat16)
    folder = tmp_path_factory.mktemp("llada_bf16")
    save_pretrained(model, build_test_tokenizer(style="llada", vocab_size=cfg["vocab_size"]), cfg, folder)
    return folder, model


def _ids() -> torch.Tensor:
    return torch.randint(3, 250, (1, 7), generator=torch.Generator().manual_seed(1))


def test_bf16_load_is_a_view_of_the_file(saved):
    """Every parameter points into the mmap of model.safetensors: nothing was cast, made contiguous or tied by copy."""
    folder, _ = saved
    loaded, *_ = load_model(folder, dtype=torch.bfloat16)
    params = list(loaded.parameters())
    assert count_mapped(params) == len(params) > 0
    cast, *_ = load_model(folder, dtype=torch.float32)  # a real cast must copy: the check can fail
    assert count_mapped(list(cast.parameters())) == 0


@pytest.mark.parametrize("dmap", [{"": "cpu"}, {f"{T}.blocks.0": "cpu", "": "cpu"}, {"": torch.device("cpu")}])
def test_cpu_only_maps_load_and_match(saved, dmap):
    folder, model = saved
    loaded, *_ = load_model(folder, device_map=dmap)
    with torch.no_grad():
        torch.testing.assert_close(loaded(_ids()), model(_ids()), rtol=0, atol=0)  # same bf16 weights, same ops


@pytest.mark.parametrize(
    "dmap, match",
    [
        ({f"{T}.blokcs.0": "cpu", "": "cpu"}, r"'model\.transformer\.blokcs\.0'.*not a module.*did you mean"),
        ({"": "disk"}, "disk offload"),
        ({"": "gpu7"}, "not a device"),
        ({}, "places nothing"),
        ("fastest", "not a strategy.*auto"),
    ],
)
def test_bad_maps_are_clear_errors(saved, dmap, match):
    folder, _ = saved
    with pytest.raises(ValueError, match=match):
        load_model(folder, device_map=dmap)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_missing_cuda_device_is_named(saved):
    folder, _ = saved
    with pytest.raises(ValueError, match=r"CUDA device 1, but this machine has no CUDA device"):
        load_model(folder, device_map={"": "cpu", f"{T}.blocks.1": 1})


def test_uncovered_parameters_are_named():
    config = tiny_config("llada")
    with torch.device("meta"):  # as load_model builds it before reading weights
        model = detect_family(config).build_model(config)
    with pytest.raises(KeyError, match=r"places no module containing model\.transformer\.wte\.weight"):
        resolve_device_map(model, {f"{T}.blocks": "cpu"}, torch.bfloat16)
    with pytest.raises(TypeError, match="strategy name"):
        resolve_device_map(model, ["cpu"], torch.bfloat16)
