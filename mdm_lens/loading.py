"""Load hub-layout checkpoints (local folder or hub id) straight into the native family modules.

No `trust_remote_code`: config.json is parsed by the family, safetensors are read key by key onto
a meta-initialised module (`load_state_dict(assign=True)`), so an 8B bf16 model never needs 2x memory.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .families import detect_family, family_module
from .families.base import FamilySpec
from .tiny_tokenizer import build_test_tokenizer

__all__ = ["load_model", "build_random_model", "save_pretrained", "tiny_config", "build_test_tokenizer",
           "resolve_mask_id", "read_config"]

_SF_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]


def _folder(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; anything else is a hub id fetched with huggingface_hub (safetensors only)."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if p.exists() or str(name_or_path).startswith((".", "/")):
        raise FileNotFoundError(f"{name_or_path!r} is not a folder in hub layout (config.json + *.safetensors)")
    from huggingface_hub import snapshot_download
    return Path(snapshot_download(str(name_or_path), allow_patterns=_HUB_FILES))


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    return json.loads(path.read_text())


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {folder} "
                            "(only safetensors checkpoints are supported)")


def _load_tokenizer(folder: Path):
    """AutoTokenizer without remote code; a Qwen2 BPE fallback for Dream's custom tokenizer class."""
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()    # AutoConfig grumbles about the unknown model_type; we never use it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as first:                         # e.g. tokenizer_class DreamTokenizer (remote code)
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            from transformers import Qwen2Tokenizer
            return Qwen2Tokenizer.from_pretrained(str(folder))
        raise RuntimeError(f"could not load the tokenizer in {folder}: {first}") from first
    finally:
        hf_logging.set_verbosity(level)


def resolve_mask_id(config: dict, tokenizer, spec: FamilySpec) -> int:
    """config.json's mask_token_id, else the tokenizer's mask token, else the family default."""
    if config.get("mask_token_id") is not None:
        return int(config["mask_token_id"])
    if tokenizer is not None and getattr(tokenizer, "mask_token_id", None) is not None:
        return int(tokenizer.mask_token_id)
    return spec.default_mask_id


def _expected_keys(model: nn.Module) -> set[str]:
    """State-dict keys a checkpoint must hold: tied aliases (e.g. Dream's lm_head) are optional."""
    tied = getattr(model, "tied_keys", lambda: {})()
    return set(model.state_dict().keys()) - set(tied)


def _check_keys(model: nn.Module, found: set[str], folder: Path) -> None:
    expected = _expected_keys(model)
    optional = set(getattr(model, "tied_keys", lambda: {})())
    missing, unexpected = sorted(expected - found), sorted(found - expected - optional)
    if missing or unexpected:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:12]) + (f" ... ({len(keys)} in all)" if len(keys) > 12 else "")
        raise KeyError(f"checkpoint {folder} does not match the {type(model).__name__} layout: "
                       f"missing keys [{show(missing)}]; unexpected keys [{show(unexpected)}]")


def _device_for(key: str, device_map: dict[str, Any]) -> Any:
    """Longest module-prefix match of a parameter name in an accelerate device map."""
    best, dev = -1, None
    for prefix, d in device_map.items():
        if prefix == "" or key == prefix or key.startswith(prefix + "."):
            if len(prefix) > best:
                best, dev = len(prefix), d
    if dev is None:
        raise KeyError(f"device_map places no module containing {key!r}")
    return dev


def _build_meta(config: dict, spec: FamilySpec) -> nn.Module:
    with torch.device("meta"):
        return family_module(spec).build_model(config)


def _checkpoint_dtype(files: list[Path]) -> torch.dtype:
    with safe_open(str(files[0]), "pt") as f:
        key = next(iter(f.keys()))
        return _SF_DTYPES.get(f.get_slice(key).get_dtype(), torch.float32)


def load_model(name_or_path: str | os.PathLike, dtype: torch.dtype | None = None, device: Any = None,
               device_map: Any = None) -> tuple[nn.Module, Any, FamilySpec, dict]:
    """-> (native model in eval mode, tokenizer or None, family spec, config dict).

    dtype None keeps the checkpoint's dtype. `device_map` ("auto", "balanced", ... or a dict
    module-prefix -> device) places blocks with accelerate; the config dict gets `mask_token_id`
    filled from the tokenizer when config.json lacks it.
    """
    folder = _folder(name_or_path)
    config = read_config(folder)
    spec = detect_family(config)
    tokenizer = _load_tokenizer(folder)
    config.setdefault("mask_token_id", resolve_mask_id(config, tokenizer, spec))
    native_loader = getattr(family_module(spec), "from_pretrained", None)
    if native_loader is not None:       # a family served by transformers' own classes and loader
        return native_loader(str(folder), dtype, device, device_map).eval(), tokenizer, spec, config
    model = _build_meta(config, spec)
    files = _weight_files(folder)
    dtype = dtype or _checkpoint_dtype(files)
    model.to(dtype)

    dmap = None
    if device_map is not None:
        if device is not None:
            raise ValueError("pass either device or device_map, not both")
        if isinstance(device_map, str):
            from accelerate import infer_auto_device_map
            from accelerate.utils import get_balanced_memory
            no_split = list(getattr(model, "no_split_modules", []))
            max_mem = None if device_map == "sequential" else get_balanced_memory(
                model, dtype=dtype, no_split_module_classes=no_split, low_zero=device_map == "balanced_low_0")
            dmap = infer_auto_device_map(model, max_memory=max_mem, no_split_module_classes=no_split, dtype=dtype)
        else:
            dmap = dict(device_map)
        bad = {k: v for k, v in dmap.items() if v in ("disk", "meta")}
        if bad:
            raise ValueError(f"disk offload is not supported; device_map puts {bad} there")
    target = torch.device(device) if device is not None else torch.device("cpu")

    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                dev = _device_for(key, dmap) if dmap is not None else target
                t = f.get_tensor(key)
                state[key] = t.to(device=dev, dtype=dtype if t.is_floating_point() else t.dtype)
    _check_keys(model, set(state), folder)
    optional = set(getattr(model, "tied_keys", lambda: {})())
    model.load_state_dict(state, strict=not optional, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    still_meta = [n for n, p in model.named_parameters() if p.is_meta]
    if still_meta:
        raise KeyError(f"parameters not filled from {folder}: {still_meta[:12]}")
    if dmap is not None:
        from accelerate import dispatch_model
        model = dispatch_model(model, device_map=dmap)
    return model.eval(), tokenizer, spec, config


def build_random_model(config: dict, seed: int = 0) -> nn.Module:
    """A seeded random model of the family named by config: N(0, 0.02) linear/embedding weights, zero biases."""
    spec = detect_family(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)                     # construction-time init of non-linear parameters
        model = family_module(spec).build_model(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():        # norms keep their constructed identity values
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * 0.02)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()


def save_pretrained(model: nn.Module, tokenizer, config: dict, folder: str | os.PathLike,
                    shard_size: int | None = None) -> Path:
    """Write hub layout: config.json, model.safetensors or shards of <= shard_size bytes + index json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_pretrained"):       # a transformers model: its own writer handles tied weights
        model.save_pretrained(str(folder), max_shard_size=shard_size or "50GB")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder))
        return folder
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tied = set(getattr(model, "tied_keys", lambda: {})())
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if k not in tied}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        n = state[key].numel() * state[key].element_size()
        if shard_size and shards[-1] and size + n > shard_size:
            shards.append({})
            size = 0
        shards[-1][key] = state[key]
        size += n
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def tiny_config(family: str = "llada", **overrides: Any) -> dict[str, Any]:
    """config.json-style dict of a tiny model (d 64, 2 layers, 4 heads, vocab 320) in the family's own
    field names, with token ids matching `build_test_tokenizer(style=family)`."""
    return family_module(family).tiny_config(**overrides)
