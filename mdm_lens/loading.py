"""Load hub-layout checkpoints (local folder or hub id) straight into the native family modules.

No `trust_remote_code`: config.json is parsed by the family, safetensors are read key by key onto
a meta-initialised module (`load_state_dict(assign=True)`) as views of each shard's memory map
(`mapped_safetensors`), so a bf16 load reads only headers and never needs more than 1x the weight bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import save_file
from torch import nn

from . import organisms
from .device_map import device_for, resolve_device_map
from .families import detect_family
from .families.base import resolve_mask_id
from .families.base import FamilySpec
from .mapped_safetensors import MappedSafetensors
from .quantized import CONFIG_KEY as _QUANT_KEY
from .quantized import SCHEME as _QUANT_SCHEME
from .quantized import dequantize_state, quantize_state
from .load_checks import (
    check_chat_template,
    check_mask_id,
    check_name,
    check_sampler_entry,
    check_tensor_dtype,
)
from .safefile import StagedWrites, damaged_file, open_safetensors, read_json, reading

__all__ = [
    "load_model",
    "build_random_model",
    "build_meta_model",
    "save_pretrained",
    "resolve_mask_id",
    "read_config",
    "parse_dtype",
    "check_sizes",
]

_SF_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]
_DTYPE_NAMES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
}


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch floating dtype, one of the usual names ("bfloat16"/"bf16", "float16"/"fp16", "float32"/"fp32",
    also "torch.bfloat16"), or None / "auto" for the checkpoint's own dtype."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key == "auto":
            return None
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
    raise ValueError(
        f"dtype={dtype!r} is not a floating dtype; use a torch dtype (torch.bfloat16, ...), "
        f"one of {sorted(_DTYPE_NAMES)} or 'auto' (the checkpoint's own dtype)"
    )


def _looks_like_short_name(name: str) -> bool:
    """Packaged organisms are bare names; hub ids are `owner/name`; paths hold a separator or start with . or ~."""
    return not any(c in name for c in ("/", "\\")) and not name.startswith((".", "~"))


def _unknown_short_name(name: str) -> FileNotFoundError:
    import difflib

    packaged = organisms.available()
    close = difflib.get_close_matches(name.replace("_", "-").lower(), packaged, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return FileNotFoundError(
        f"{name!r} is neither a local folder nor a packaged organism; {hint}packaged "
        f"organisms: {packaged}. Hub models are named 'owner/name' "
        "(e.g. 'GSAI-ML/LLaDA-8B-Instruct')."
    )


def _folder(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; a bare name must be a packaged organism; `owner/name` is a hub id fetched with
    huggingface_hub (safetensors only, from its cache when HF_HUB_OFFLINE is set)."""
    check_name(name_or_path)
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    name = str(name_or_path)
    if _looks_like_short_name(name) and not p.exists():
        packaged = organisms.resolve(name)
        if packaged is not None:
            return Path(packaged)
        raise _unknown_short_name(name)
    if p.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1 or "\\" in name:
        raise FileNotFoundError(f"{name!r} is not a folder in hub layout (config.json + *.safetensors)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=_HUB_FILES))
    except Exception as e:  # offline, unknown repo, gated repo, no network ...
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        raise OSError(
            f"could not get hub model {name!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            + ("; HF_HUB_OFFLINE is set, so only models already in the hub cache load" if offline else "")
            + f". It is not a local folder; packaged organisms: {organisms.available()}"
        ) from e


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    config = read_json(path, "a config.json file")
    if not isinstance(config, dict):
        raise damaged_file(path, "a config.json file", f"a JSON {type(config).__name__}, not an object")
    return config


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = read_json(index, "a checkpoint index")
        with reading(index, "a checkpoint index"):
            names = data["weight_map"].values()
            if not all(isinstance(n, str) and n and "/" not in n and "\\" not in n for n in names):
                raise TypeError("weight_map values must be shard file names in the same folder")
        shards = [folder / s for s in sorted(set(names))]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names shard(s) that are not in {folder}: {missing}")
        return shards
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(
        f"no model.safetensors or model.safetensors.index.json in {folder} (only safetensors checkpoints are supported)"
    )


def _config_vocab(config: dict) -> int | None:
    v = config.get(
        "vocab_size",
        (config.get("text_config") or {}).get("vocab_size") if isinstance(config.get("text_config"), dict) else None,
    )
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _load_tokenizer(folder: Path):
    """AutoTokenizer without remote code; a Qwen2 BPE fallback for Dream's custom tokenizer class."""
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # AutoConfig grumbles about the unknown model_type; we never use it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as first:  # e.g. tokenizer_class DreamTokenizer (remote code)
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            from transformers import Qwen2Tokenizer

            return Qwen2Tokenizer.from_pretrained(str(folder))
        raise RuntimeError(f"could not load the tokenizer in {folder}: {first}") from first
    finally:
        hf_logging.set_verbosity(level)


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

        raise KeyError(
            f"checkpoint {folder} does not match the {type(model).__name__} layout: "
            f"missing keys [{show(missing)}]; unexpected keys [{show(unexpected)}]"
        )


def _device_for(key: str, device_map: dict[str, Any]) -> Any:
    """Longest module-prefix match of a parameter name in an accelerate device map (mdm_lens.device_map)."""
    return device_for(key, device_map)


def _builder(spec: FamilySpec):
    if spec.build_model is None:
        raise NotImplementedError(f"the {spec.name} family declares no build_model (FamilySpec.build_model)")
    return spec.build_model


def check_sizes(config: dict, spec: FamilySpec, where: str = "config") -> None:
    """Every size field present is a positive integer, the width splits into the heads and the heads into
    the kv heads; the error names the field, the value and the valid range."""
    fields = spec.size_fields  # checked before a module is built: modules accept n_layers=-2 silently
    if not fields:
        return
    sub = config.get(spec.size_section) if spec.size_section else config
    if not isinstance(sub, dict):
        return  # transformers' config class supplies its defaults
    prefix = f"{spec.size_section}." if spec.size_section else ""
    for key in fields:
        val = sub.get(key)
        if val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
            raise ValueError(f"{where}: {prefix}{key}={val!r} is invalid; it must be a positive integer (>= 1)")
    layers, width, heads, kv = (sub.get(k) for k in fields[:4])
    if width is not None and heads is not None and spec.heads_split_width and width % heads:
        raise ValueError(
            f"{where}: {prefix}{fields[1]}={width} is not divisible by {prefix}{fields[2]}={heads}; "
            f"choose a width that is a multiple of the head count"
        )
    if heads is not None and kv is not None and heads % kv:
        raise ValueError(
            f"{where}: {prefix}{fields[2]}={heads} is not a multiple of {prefix}{fields[3]}={kv}; "
            "kv heads must divide the query heads"
        )


_INIT_FNS = (
    "uniform_",
    "normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "trunc_normal_",
    "zeros_",
    "ones_",
    "constant_",
)


@contextmanager
def _no_init() -> Iterator[None]:
    """torch.nn.init's fills as no-ops while a module is built on the meta device: meta tensors hold no values,
    and each fill costs a pass through the device mode (16B MoE, 14.7k Linear layers: ~20 s of nothing)."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FNS}
    for name in _INIT_FNS:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def build_meta_model(config: dict, spec: FamilySpec | None = None) -> nn.Module:
    """The family's module on the meta device (shapes and names, no memory), as `load_model` builds it."""
    spec = spec or detect_family(config)
    with torch.device("meta"), _no_init():
        return _builder(spec)(config)


def _build_meta(config: dict, spec: FamilySpec) -> nn.Module:
    return build_meta_model(config, spec)


def _checkpoint_dtype(files: list[Path]) -> torch.dtype:
    """The one floating dtype of all tensors (headers only); mixed float dtypes need an explicit dtype."""
    found: dict[str, list[str]] = {}
    for file in files:
        with open_safetensors(file, "a checkpoint shard") as f:
            for key in f.keys():
                code = f.get_slice(key).get_dtype()
                if code in _SF_DTYPES:
                    found.setdefault(code, []).append(key)
    if len(found) > 1:
        detail = "; ".join(
            f"{len(keys)} {_SF_DTYPES[c]} tensor(s) e.g. {keys[0]!r}" for c, keys in sorted(found.items())
        )
        raise ValueError(
            f"the checkpoint in {files[0].parent} mixes floating dtypes ({detail}); pass an explicit "
            "dtype (e.g. dtype='bfloat16') to choose the one to load in"
        )
    return _SF_DTYPES[next(iter(found))] if found else torch.float32


def _device_map(model: nn.Module, device_map: Any, dtype: torch.dtype) -> dict[str, Any]:
    """A checked accelerate device map (module prefix -> device) from a strategy name or a dict; no disk offload."""
    return resolve_device_map(model, device_map, dtype)


def load_model(
    name_or_path: str | os.PathLike, dtype: torch.dtype | None = None, device: Any = None, device_map: Any = None
) -> tuple[nn.Module, Any, FamilySpec, dict]:
    """-> (native model in eval mode, tokenizer or None, family spec, config dict).

    dtype None or "auto" keeps the checkpoint's dtype (one floating dtype across all tensors); a torch dtype
    or a name such as "bfloat16" / "bf16" casts floating tensors. `device_map` ("auto", "balanced", ... or a dict
    module-prefix -> device) places blocks with accelerate; the config dict gets `mask_token_id`
    filled from the tokenizer when config.json lacks it.
    """
    dtype = parse_dtype(dtype)
    folder = _folder(name_or_path)
    config = read_config(folder)
    spec = detect_family(config)
    check_sizes(config, spec, where=str(folder / "a config.json file"))
    tokenizer = _load_tokenizer(folder)
    check_chat_template(tokenizer, folder)
    check_sampler_entry(config, folder)
    config.setdefault("mask_token_id", resolve_mask_id(config, tokenizer, spec))
    if spec.default_mask_id >= 0:  # a family without a mask token (DiffusionGemma) records -1
        check_mask_id(config["mask_token_id"], _config_vocab(config), folder)
    native_loader = spec.from_pretrained
    if native_loader is not None:  # a family served by transformers' own classes and loader
        return native_loader(str(folder), dtype, device, device_map).eval(), tokenizer, spec, config
    model = _build_meta(config, spec)
    files = _weight_files(folder)
    dtype = dtype or _checkpoint_dtype(files)
    model.to(dtype)

    if device_map is not None and device is not None:
        raise ValueError("pass either device or device_map, not both")
    dmap = None if device_map is None else _device_map(model, device_map, dtype)
    target = torch.device(device) if device is not None else torch.device("cpu")

    raw: dict[str, torch.Tensor] = {}
    source: dict[str, Path] = {}
    for file in files:  # views of each shard's mapping: nothing is read until a forward touches it
        with MappedSafetensors(file, "a checkpoint shard") as f:
            for key in f.keys():
                raw[key], source[key] = f.get_tensor(key), file
    raw = dequantize_state(raw, config, str(folder), dtype)  # int8-rowwise organisms; else unchanged
    state: dict[str, torch.Tensor] = {}
    wanted = {k: v.dtype for k, v in model.state_dict().items()}
    for key, t in raw.items():
        dev = _device_for(key, dmap) if dmap is not None else target
        check_tensor_dtype(key, t, wanted.get(key), source[key])
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
    check_sizes(config, spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # construction-time init of non-linear parameters
        model = _builder(spec)(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():  # norms keep their constructed identity values
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * 0.02)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()


_INDEX = "model.safetensors.index.json"


def _weight_file_names(folder: Path) -> set[str]:
    """Names of the weight files (single file, index and the shards it names) a folder holds now."""
    names = {n for n in ("model.safetensors", _INDEX) if (folder / n).is_file()}
    if _INDEX in names:
        try:
            names |= {
                n
                for n in json.loads((folder / _INDEX).read_text())["weight_map"].values()
                if isinstance(n, str) and "/" not in n and "\\" not in n
            }
        except Exception:  # an unreadable old index: its shards stay, harmless
            pass
    return names


def save_pretrained(
    model: nn.Module,
    tokenizer,
    config: dict,
    folder: str | os.PathLike,
    shard_size: int | None = None,
    int8: bool = False,
) -> Path:
    """Write hub layout: config.json, model.safetensors or shards of <= shard_size bytes + index json.

    `int8=True` writes row-wise int8 weights (`mdm_lens.quantized`, about a quarter of float32's bytes) and
    records the scheme in config.json, which `load_model` reads back into float weights.

    All or nothing: every file is written under a temporary name first and moved into place only once all
    are written (weights first, config.json last), so a failure at any point (full disk, Ctrl-C) leaves
    the previous checkpoint in `folder` loadable. Weight files of the previous layout that the new one
    does not use (e.g. old shards after a single-file save) are removed afterwards.
    """
    if int8 and hasattr(model, "save_pretrained"):
        raise ValueError("int8=True is for native mdm-lens models; a transformers model saves float weights only")
    config = {k: v for k, v in config.items() if k != _QUANT_KEY} | ({_QUANT_KEY: _QUANT_SCHEME} if int8 else {})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = _weight_file_names(folder)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
    try:
        with StagedWrites() as w:
            if hasattr(model, "save_pretrained"):  # a transformers model: its own writer handles tied weights
                model.save_pretrained(str(staging), max_shard_size=shard_size or "50GB")
            else:
                _stage_weights(w, model, folder, shard_size, int8)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(staging))
            produced = sorted(
                staging.iterdir(), key=lambda f: (f.name == "config.json", f.name.endswith(".json"), f.name)
            )
            for f in produced:
                w.stage(folder / f.name, lambda tmp, f=f: os.replace(f, tmp))
            if not hasattr(model, "save_pretrained"):
                w.stage(folder / "config.json", _text_writer(json.dumps(config, indent=2, sort_keys=True)))
            new = {p.name for p in w.targets}
        for name in old - new:
            (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _stage_weights(w: StagedWrites, model: nn.Module, folder: Path, shard_size: int | None, int8: bool) -> None:
    tied = set(getattr(model, "tied_keys", lambda: {})())
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if k not in tied}
    state = quantize_state(state) if int8 else state
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
        w.stage(folder / "model.safetensors", lambda tmp: save_file(shards[0], tmp, metadata={"format": "pt"}))
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            w.stage(folder / name, lambda tmp, shard=shard: save_file(shard, tmp, metadata={"format": "pt"}))
            weight_map.update({k: name for k in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        w.stage(folder / _INDEX, _text_writer(json.dumps(index, indent=2)))


def _text_writer(text: str):
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return write
