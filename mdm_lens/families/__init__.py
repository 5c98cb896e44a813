"""Family registry: config.json -> FamilySpec. One family is one file here that fills in a `FamilySpec`
(`base.py` says what it declares: ids, sampler and settings, length key, fast path, loading facts, sites,
tiny test config); the rest of the package asks the spec. A family outside the package (or in a test)
joins with `register_family(spec)`."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .base import FamilySpec, FastSupport, Site

_MODULES = {"llada": "llada", "dream": "dream", "diffusion_gemma": "gemma", "llada2": "llada2", "lladamoe": "lladamoe"}


def _load(name: str) -> ModuleType | None:
    full = f"{__name__}.{_MODULES[name]}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as e:  # only a family file that does not exist (yet) is skipped
        if e.name == full:
            return None
        raise


FAMILY_MODULES: dict[str, ModuleType] = {n: m for n in _MODULES if (m := _load(n)) is not None}
FAMILIES: dict[str, FamilySpec] = {n: m.SPEC for n, m in FAMILY_MODULES.items()}


def _supported() -> str:
    return "; ".join(
        f"{n} (model_type {list(s.model_types)}, architectures {list(s.architectures)})" for n, s in FAMILIES.items()
    )


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
    raise ValueError(
        f"unknown model family: model_type={config.get('model_type')!r}, architectures={archs}. "
        f"Supported families: {_supported()}"
    )


def register_family(spec: FamilySpec, module: ModuleType | None = None) -> FamilySpec:
    """Add (or replace) a family: `detect_family` picks it from config.json, loading and generation ask it.
    Refuses a spec that cannot build a model or generate, naming the missing field."""
    missing = [f for f in ("build_model", "build_sites", "generate") if getattr(spec, f) is None]
    if missing:
        raise ValueError(f"family {spec.name!r}: FamilySpec needs {missing} to load and generate; fill them in")
    FAMILIES[spec.name] = spec
    if module is not None:
        FAMILY_MODULES[spec.name] = module
    return spec


def tiny_config(family: str = "llada", **overrides: Any) -> dict[str, Any]:
    """config.json-style dict of a tiny model of `family` (its `FamilySpec.tiny_config`), `overrides` applied."""
    spec = FAMILIES.get(family)
    if spec is None or spec.tiny_config is None:
        have = sorted(n for n, s in FAMILIES.items() if s.tiny_config is not None)
        raise ValueError(f"no tiny config for family {family!r}; use one of {have}")
    return spec.tiny_config(**overrides)


def family_module(spec_or_name: FamilySpec | str) -> ModuleType:
    """The module defining a family (its `build_model`, config class, ...)."""
    name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.name
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown family {name!r}; supported: {sorted(FAMILY_MODULES)}")
    return FAMILY_MODULES[name]


__all__ = [
    "FAMILIES",
    "FAMILY_MODULES",
    "FamilySpec",
    "FastSupport",
    "Site",
    "detect_family",
    "family_module",
    "register_family",
    "tiny_config",
]
