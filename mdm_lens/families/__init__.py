"""Family registry: config.json -> FamilySpec, and the native module builder of each family."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .base import FamilySpec, Site

_MODULES = {"llada": "llada", "dream": "dream", "diffusion_gemma": "gemma"}


def _load(name: str) -> ModuleType | None:
    full = f"{__name__}.{_MODULES[name]}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as e:     # only a family file that does not exist (yet) is skipped
        if e.name == full:
            return None
        raise


FAMILY_MODULES: dict[str, ModuleType] = {n: m for n in _MODULES if (m := _load(n)) is not None}
FAMILIES: dict[str, FamilySpec] = {n: m.SPEC for n, m in FAMILY_MODULES.items()}


def _supported() -> str:
    return "; ".join(f"{n} (model_type {list(s.model_types)}, architectures {list(s.architectures)})"
                     for n, s in FAMILIES.items())


def detect_family(config: dict[str, Any]) -> FamilySpec:
    """Pick the family from config.json's `model_type`, then `architectures` (case-insensitive)."""
    model_type = str(config.get("model_type", "")).lower()
    archs = [str(a) for a in config.get("architectures") or []]
    for spec in FAMILIES.values():
        if model_type and model_type in {t.lower() for t in spec.model_types}:
            return spec
    for spec in FAMILIES.values():
        if any(a in spec.architectures for a in archs):
            return spec
    raise ValueError(f"unknown model family: model_type={config.get('model_type')!r}, architectures={archs}. "
                     f"Supported families: {_supported()}")


def family_module(spec_or_name: FamilySpec | str) -> ModuleType:
    """The module defining a family (its `build_model`, config class, ...)."""
    name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.name
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown family {name!r}; supported: {sorted(FAMILY_MODULES)}")
    return FAMILY_MODULES[name]


__all__ = ["FAMILIES", "FAMILY_MODULES", "FamilySpec", "Site", "detect_family", "family_module"]
