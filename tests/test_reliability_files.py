"""Issue 10, files and loading: atomic all-or-nothing writes, kept modes, loaders that name the path and the
cause, plan-file validation (version, restrictions, non-finite maps), dtype names, short names, size checks."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import mdm_lens.loading as loading
import mdm_lens.safefile as safefile
from interventions import GaussianOT, Plan, restrict
from mdm_lens import HookedMDM
from mdm_lens.cache import StepCache
from mdm_lens.collect import Activations
from mdm_lens.loading import build_random_model, load_model, save_pretrained
from mdm_lens.testing import tiny_config
from mdm_lens.safefile import StagedWrites, save_safetensors_atomic

F64 = torch.float64
SHARD = 60_000  # a tiny llada splits into several shards at this size


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_loads_as(folder, model) -> None:
    loaded, *_ = load_model(folder)
    want, got = _state(model), loaded.state_dict()
    assert set(want) == set(got)
    for k in want:
        assert torch.equal(want[k], got[k]), k


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def cfg():
    return tiny_config("llada")


@pytest.fixture(scope="module")
def models(cfg):
    return build_random_model(cfg, seed=1), build_random_model(cfg, seed=2)


# ------------------------------------------------------------------ point 2: atomic writes
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 99])
def test_failing_save_leaves_previous_checkpoint_loadable(tmp_path, cfg, models, monkeypatch, fail_at):
    """A failure while staging file k (first shard, a later shard, the index, config.json) changes nothing."""
    old, new = models
    save_pretrained(old, None, cfg, tmp_path, shard_size=SHARD)
    n_files = len(list(tmp_path.iterdir()))
    real, calls = StagedWrites.stage, []

    def flaky(self, path, write):
        calls.append(path)
        if len(calls) == min(fail_at, n_files):
            raise OSError(28, "No space left on device (injected)")
        return real(self, path, write)

    monkeypatch.setattr(StagedWrites, "stage", flaky)
    with pytest.raises(OSError, match="injected"):
        save_pretrained(new, None, cfg, tmp_path, shard_size=SHARD)
    monkeypatch.undo()
    _assert_loads_as(tmp_path, old)
    assert _leftovers(tmp_path) == []


def test_interrupt_inside_shard_writer_and_failing_rename(tmp_path, cfg, models, monkeypatch):
    old, new = models
    save_pretrained(old, None, cfg, tmp_path, shard_size=SHARD)
    real_save, n = loading.save_file, []

    def interrupted(tensors, path, metadata=None):
        n.append(path)
        if len(n) == 2:  # half of the second shard is on disk, then Ctrl-C
            with open(path, "wb") as f:
                f.write(b"\x00" * 100)
            raise KeyboardInterrupt
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(loading, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(new, None, cfg, tmp_path, shard_size=SHARD)
    monkeypatch.undo()
    _assert_loads_as(tmp_path, old)
    # a rename failing halfway through the commit rolls back the files already replaced
    real_replace, moved = os.replace, []

    def replace(src, dst):
        if str(src).endswith(".tmp"):
            moved.append(dst)
            if len(moved) == 2:
                raise OSError("rename failed (injected)")
        return real_replace(src, dst)

    monkeypatch.setattr(safefile.os, "replace", replace)
    with pytest.raises(OSError, match="injected"):
        save_pretrained(new, None, cfg, tmp_path, shard_size=SHARD)
    monkeypatch.undo()
    _assert_loads_as(tmp_path, old)
    assert _leftovers(tmp_path) == []
    save_pretrained(new, None, cfg, tmp_path, shard_size=SHARD)  # and a clean save goes through
    _assert_loads_as(tmp_path, new)


def test_layout_change_removes_stale_weight_files(tmp_path, cfg, models):
    old, new = models
    save_pretrained(old, None, cfg, tmp_path, shard_size=SHARD)
    save_pretrained(new, None, cfg, tmp_path)  # single file now: the old index must not win
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    _assert_loads_as(tmp_path, new)
    save_pretrained(old, None, cfg, tmp_path, shard_size=SHARD)
    assert not (tmp_path / "model.safetensors").exists()
    _assert_loads_as(tmp_path, old)


def test_modes_kept_and_umask_for_new_files(tmp_path, cfg, models):
    old, _ = models
    prev = os.umask(0o022)
    try:
        save_pretrained(old, None, cfg, tmp_path)
        for name in ("config.json", "model.safetensors"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
        os.chmod(tmp_path / "config.json", 0o640)
        os.chmod(tmp_path / "model.safetensors", 0o604)
        save_pretrained(old, None, cfg, tmp_path)
        assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o640
        assert stat.S_IMODE(os.stat(tmp_path / "model.safetensors").st_mode) == 0o604
        plan = tmp_path / "plan.safetensors"
        save_safetensors_atomic({"x": torch.zeros(2)}, plan, {"a": "b"})
        assert stat.S_IMODE(os.stat(plan).st_mode) == 0o644
    finally:
        os.umask(prev)


def test_saving_into_missing_folder_names_the_folder(tmp_path):
    target = tmp_path / "nope" / "plan.safetensors"
    with pytest.raises(FileNotFoundError) as err:
        save_safetensors_atomic({"x": torch.zeros(2)}, target, {})
    msg = str(err.value)
    assert str(tmp_path / "nope") in msg and "does not exist" in msg and ".tmp" not in msg
    assert not (tmp_path / "nope").exists()


# ------------------------------------------------------------------ point 4/6: loaders name path and cause
def _corrupt(path, how: str) -> None:
    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(b"this is not a safetensors file at all" * 4)
    elif how == "truncated":
        path.write_bytes(data[: len(data) - 40])
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty"])
def test_corrupt_checkpoint_shard_names_path(tmp_path, cfg, models, how):
    save_pretrained(models[0], None, cfg, tmp_path, shard_size=SHARD)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    _corrupt(shard, how)
    with pytest.raises(ValueError) as err:
        load_model(tmp_path)
    assert str(shard) in str(err.value) and "a checkpoint shard" in str(err.value)


def test_config_and_index_errors_name_path(tmp_path, cfg, models):
    save_pretrained(models[0], None, cfg, tmp_path, shard_size=SHARD)
    index = tmp_path / "model.safetensors.index.json"
    good_index = index.read_text()
    index.write_text(good_index[:40])
    with pytest.raises(ValueError, match="invalid JSON") as err:
        load_model(tmp_path)
    assert str(index) in str(err.value)
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match="missing entry 'weight_map'"):
        load_model(tmp_path)
    gone = json.loads(good_index)
    gone["weight_map"][next(iter(gone["weight_map"]))] = "model-00009-of-00009.safetensors"
    index.write_text(json.dumps(gone))
    with pytest.raises(FileNotFoundError, match="model-00009-of-00009"):
        load_model(tmp_path)
    index.write_text(good_index)
    config = tmp_path / "config.json"
    config.write_text("{'d_model': 64,")
    with pytest.raises(ValueError, match="invalid JSON") as err:
        load_model(tmp_path)
    assert str(config) in str(err.value)
    config.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an object"):
        load_model(tmp_path)


def test_checkpoint_dtype_from_all_tensors(tmp_path, cfg, models):
    save_pretrained(models[0], None, cfg, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    last = sorted(state)[-1]
    state[last] = state[last].to(torch.bfloat16)  # the first tensor is still float32
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="mixes floating dtypes") as err:
        load_model(tmp_path)
    assert "bfloat16" in str(err.value) and "float32" in str(err.value) and "dtype=" in str(err.value)
    loaded, *_ = load_model(tmp_path, dtype="bf16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(
    "name,want",
    [
        ("bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
        ("float16", torch.float16),
        ("fp16", torch.float16),
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("torch.bfloat16", torch.bfloat16),
        (torch.float16, torch.float16),
        ("auto", torch.float32),
        (None, torch.float32),
    ],
)
def test_dtype_names(name, want):
    assert (loading.parse_dtype(name) or torch.float32) == want


def test_dtype_string_loads_and_bad_dtype_is_named(tmp_path, cfg, models):
    save_pretrained(models[0], None, cfg, tmp_path)
    model = HookedMDM.from_pretrained(str(tmp_path), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    for bad in ("int8", "bfloat", torch.int64, 16):
        with pytest.raises(ValueError, match="not a floating dtype") as err:
            load_model(tmp_path, dtype=bad)
        assert "'bf16'" in str(err.value) and "auto" in str(err.value)


def test_misspelled_short_name_lists_organisms_without_the_hub(monkeypatch):
    import huggingface_hub

    def no_hub(*a, **k):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    with pytest.raises(FileNotFoundError) as err:
        HookedMDM.from_pretrained("tiny_if")
    msg = str(err.value)
    assert "did you mean 'tiny-if'" in msg and "packaged organisms: [" in msg and "owner/name" in msg
    with pytest.raises(FileNotFoundError, match="packaged organisms"):
        load_model("llada")


def test_offline_hub_id_names_the_cause(monkeypatch):
    import huggingface_hub

    def offline(*a, **k):
        raise OSError("Cannot find the requested files in the local cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError) as err:
        load_model("someone/llada-nowhere")
    msg = str(err.value)
    assert "'someone/llada-nowhere'" in msg and "HF_HUB_OFFLINE" in msg and "tiny-if" in msg


@pytest.mark.parametrize(
    "family,over,needle",
    [
        ("llada", {"n_layers": -2}, "n_layers=-2"),
        ("llada", {"d_model": 66}, "d_model=66 is not divisible"),
        ("llada", {"vocab_size": 0, "embedding_size": 0}, "vocab_size=0"),
        ("llada", {"n_heads": 2.5}, "n_heads=2.5"),
        ("llada", {"n_kv_heads": 3}, "n_kv_heads=3"),
        ("dream", {"num_hidden_layers": 0}, "num_hidden_layers=0"),
        ("dream", {"hidden_size": 62}, "hidden_size=62 is not divisible"),
        ("dream", {"vocab_size": -5}, "vocab_size=-5"),
    ],
)
def test_from_config_validates_sizes(family, over, needle):
    with pytest.raises(ValueError, match="positive integer|divisible|multiple") as err:
        HookedMDM.from_config({**tiny_config(family), **over})
    assert needle in str(err.value)


# ------------------------------------------------------------------ point 4: plan, cache, activation files
def _rewrite(path, meta_update=None, tensor_update=None) -> None:
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    meta.update(meta_update or {})
    for k, fn in (tensor_update or {}).items():
        tensors[k] = fn(tensors[k])
    save_file(tensors, str(path), metadata={k: v for k, v in meta.items() if v is not None})


@pytest.fixture
def plan_file(tmp_path):
    A = torch.randn(8, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    m = GaussianOT.fit(A, A * 2 + 1)
    path = tmp_path / "plan.safetensors"
    Plan({"blocks.0.hook_resid_post": restrict(m, steps=(1, 4))}).save(path)
    return path


def test_plan_version_restriction_and_nan_refused(plan_file):
    assert Plan.load(plan_file).sites == ["blocks.0.hook_resid_post"]
    good = plan_file.read_bytes()
    _rewrite(plan_file, {"version": "99"})
    with pytest.raises(ValueError, match="version '99'") as err:
        Plan.load(plan_file)
    assert str(plan_file) in str(err.value)
    for steps in ([5], [4, 1], ["a", 3], [-1, 3], 7):
        plan_file.write_bytes(good)
        with safe_open(str(plan_file), "pt") as f:
            sites = json.loads(f.metadata()["sites"])
        sites["blocks.0.hook_resid_post"][0]["steps"] = steps
        _rewrite(plan_file, {"sites": json.dumps(sites)})
        with pytest.raises(ValueError, match="restriction steps=.* is malformed") as err:
            Plan.load(plan_file)
        assert "blocks.0.hook_resid_post" in str(err.value) and str(plan_file) in str(err.value)
    plan_file.write_bytes(good)
    key = "blocks.0.hook_resid_post::0::inner::omega"
    _rewrite(plan_file, tensor_update={key: lambda t: t.index_fill(0, torch.tensor([2]), float("nan"))})
    with pytest.raises(ValueError, match="non-finite") as err:
        Plan.load(plan_file)
    assert str(plan_file) in str(err.value) and "blocks.0.hook_resid_post" in str(err.value)


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty"])
def test_corrupt_plan_names_path(plan_file, how):
    _corrupt(plan_file, how)
    with pytest.raises(ValueError, match="is not an mdm-lens plan file") as err:
        Plan.load(plan_file)
    assert str(plan_file) in str(err.value)


def test_right_tagged_plan_with_broken_body(plan_file):
    good = plan_file.read_bytes()
    _rewrite(plan_file, {"sites": None})
    with pytest.raises(ValueError, match="missing entry 'sites'") as err:
        Plan.load(plan_file)
    assert str(plan_file) in str(err.value)
    for sites in ("{not json", json.dumps([1, 2]), json.dumps({"blocks.0.hook_resid_post": [{"type": "affine"}]})):
        plan_file.write_bytes(good)
        _rewrite(plan_file, {"sites": sites})
        with pytest.raises(ValueError) as err:
            Plan.load(plan_file)
        assert str(plan_file) in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Plan.load(plan_file.with_name("absent.safetensors"))


def test_cache_and_activation_files_name_path(tmp_path):
    cache = StepCache(["blocks.0.hook_resid_post"])
    cache.store[("blocks.0.hook_resid_post", 0)] = torch.zeros(1, 4)
    cache.t[0] = 1.0
    acts = Activations({"blocks.0.hook_resid_post": torch.zeros(3, 4, dtype=F64)}, {"n": 3})
    for obj, cls, what, key in (
        (cache, StepCache, "an mdm-lens step cache", "index"),
        (acts, Activations, "an mdm-lens activations file", "meta"),
    ):
        path = tmp_path / f"{cls.__name__}.safetensors"
        obj.save(path)
        cls.load(path)
        for how in ("garbage", "truncated"):
            good = path.read_bytes()
            _corrupt(path, how)
            with pytest.raises(ValueError, match=what) as err:
                cls.load(path)
            assert str(path) in str(err.value) and "SafetensorError" not in type(err.value).__name__
            path.write_bytes(good)
        _rewrite(path, {key: "{broken"})
        with pytest.raises(ValueError, match="invalid JSON") as err:
            cls.load(path)
        assert str(path) in str(err.value)
