"""`device_map` for `from_pretrained`: spread a model's blocks over several cards, checked before any weight is read.

Accepted forms, as in accelerate / transformers:
* a strategy name: "auto" (= "balanced"), "balanced", "balanced_low_0" (keep card 0 light for generation's extra
  tensors) or "sequential" (fill card 0, then 1, ...). accelerate's `infer_auto_device_map` cuts the model at the
  family's `no_split_modules` (a whole transformer block stays on one card) from the free memory it sees;
* a dict module name -> device: "" (the whole model), "model.transformer.blocks.3", ... to "cpu", "cuda:1",
  an int (a CUDA index) or a torch.device. The longest matching prefix places each parameter.

`accelerate.dispatch_model` then moves each module's inputs to its device (activations hop between cards at block
boundaries; the logits come back on the card of the head). Disk offload and the meta device are refused: a weight
would not be there when a hook reads it. Errors name the entry, the valid values and the fix.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

__all__ = ["STRATEGIES", "resolve_device_map", "device_for"]

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def _check_device(name: str, value: Any) -> None:
    """A device the map may name: cpu or an existing CUDA index (the machine is checked, not just the syntax)."""
    if isinstance(value, str) and value in ("disk", "meta"):
        raise ValueError(
            f"device_map[{name!r}]={value!r}: disk offload / the meta device are not supported (a hook would read "
            "weights that are not there); place every module on 'cpu' or a CUDA device"
        )
    try:
        dev = torch.device(f"cuda:{value}" if isinstance(value, int) and not isinstance(value, bool) else value)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device_map[{name!r}]={value!r} is not a device; use 'cpu', 'cuda:N' or an int N (CUDA index)"
        ) from e
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if dev.index is None else dev.index
        if index >= n:
            have = f"CUDA devices 0..{n - 1}" if n else "no CUDA device"
            raise ValueError(
                f"device_map[{name!r}]={value!r} names CUDA device {index}, but this machine has {have}; "
                "use 'cpu' or an existing card (torch.cuda.device_count())"
            )
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"device_map[{name!r}]={value!r}: device type {dev.type!r} is not supported; use cpu or cuda")


def _check_names(model: nn.Module, dmap: dict[str, Any]) -> None:
    modules = {n for n, _ in model.named_modules()}
    params = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    for name in dmap:
        if not isinstance(name, str):
            raise TypeError(f"device_map keys are module names (str), got {name!r} ({type(name).__name__})")
        if name in modules or name in params:
            continue
        close = difflib.get_close_matches(name, sorted(modules), n=3, cutoff=0.6)
        top = sorted({n for n, _ in model.named_children()})
        raise ValueError(
            f"device_map names {name!r}, which is not a module of {type(model).__name__}"
            + (f"; did you mean {close}?" if close else "")
            + f" Top-level modules: {top}; '' places the whole model; see model.named_modules() for the rest"
        )


def _check_coverage(model: nn.Module, dmap: dict[str, Any]) -> None:
    uncovered = [n for n, _ in model.named_parameters() if _match(n, dmap) is None]
    if uncovered:
        shown = ", ".join(uncovered[:6]) + (f" ... ({len(uncovered)} in all)" if len(uncovered) > 6 else "")
        raise KeyError(
            f"device_map places no module containing {shown}; add their modules (or '' for everything else) to the map"
        )


def _match(key: str, dmap: dict[str, Any]) -> tuple[int, Any] | None:
    best: tuple[int, Any] | None = None
    for prefix, dev in dmap.items():
        if prefix == "" or key == prefix or key.startswith(prefix + "."):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), dev)
    return best


def device_for(key: str, dmap: dict[str, Any]) -> Any:
    """The device of a parameter: longest module-prefix match in the map."""
    hit = _match(key, dmap)
    if hit is None:
        raise KeyError(f"device_map places no module containing {key!r}")
    return hit[1]


def _infer(model: nn.Module, strategy: str, dtype: torch.dtype) -> dict[str, Any]:
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    no_split = list(getattr(model, "no_split_modules", []))
    max_mem = None
    if strategy != "sequential":
        max_mem = get_balanced_memory(
            model, dtype=dtype, no_split_module_classes=no_split, low_zero=strategy == "balanced_low_0"
        )
    return infer_auto_device_map(model, max_memory=max_mem, no_split_module_classes=no_split, dtype=dtype)


def resolve_device_map(model: nn.Module, device_map: Any, dtype: torch.dtype) -> dict[str, Any]:
    """A checked dict module name -> device for `model` (built on the meta device) from a strategy or a dict."""
    if isinstance(device_map, str):
        if device_map not in STRATEGIES:
            raise ValueError(
                f"device_map={device_map!r} is not a strategy; use one of {list(STRATEGIES)} or a dict "
                "module name -> device (e.g. {'': 'cuda:0'})"
            )
        dmap = _infer(model, device_map, dtype)
    elif isinstance(device_map, dict):
        if not device_map:
            raise ValueError("device_map={} places nothing; use {'': 'cpu'} or a strategy such as 'auto'")
        dmap = dict(device_map)
    else:
        raise TypeError(
            f"device_map={device_map!r} ({type(device_map).__name__}) must be a strategy name {list(STRATEGIES)} "
            "or a dict module name -> device"
        )
    for name, dev in dmap.items():
        _check_device(name, dev)
    _check_names(model, dmap)
    _check_coverage(model, dmap)
    return dmap
