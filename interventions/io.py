"""Plans on disk: one safetensors file, JSON metadata in its header; nothing is ever unpickled.

This is the file format only (site -> interventions, plus metadata); `Plan.save` / `Plan.load` call it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mdm_lens.safefile import damaged_file, open_safetensors, reading, save_safetensors_atomic

from .affine import AffineMap
from .restrict import Restricted, TimestepSchedule

FORMAT, VERSION = "mdm-lens-plan", 1


def _encode(m, prefix: str, tensors: dict) -> dict:
    if isinstance(m, AffineMap):
        for k, v in m.tensors().items():
            tensors[f"{prefix}::{k}"] = v.contiguous()
        return m.header()
    if isinstance(m, Restricted):
        head = {
            "type": "restricted",
            "scope": m.scope,
            "steps": m.steps,
            "t_range": m.t_range,
            "inner": _encode(m.inner, prefix + "::inner", tensors),
        }
        if m.bounds is not None:
            tensors[f"{prefix}::lo"], tensors[f"{prefix}::hi"] = (b.double().contiguous() for b in m.bounds)
            head["bounds"] = True
        return head
    if isinstance(m, TimestepSchedule):
        return {
            "type": "schedule",
            "entries": [[lo, hi, _encode(x, f"{prefix}::{i}", tensors)] for i, (lo, hi, x) in enumerate(m.entries)],
        }
    raise TypeError(f"cannot save a {type(m).__name__}; only AffineMap, Restricted and TimestepSchedule are stored")


def _pair(value, name: str, prefix: str, integer: bool) -> tuple | None:
    """A stored step window [start, stop) (integers, 0 <= start <= stop) or t range [lo, hi] (0 <= lo <= hi <= 1)."""
    if value is None:
        return None
    kind = (int,) if integer else (int, float)
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    )
    if ok and integer:
        ok = 0 <= value[0] <= value[1]
    elif ok:
        ok = 0.0 <= value[0] <= value[1] <= 1.0
    if not ok:
        want = "[start, stop) with integers 0 <= start <= stop" if integer else "[lo, hi] with 0 <= lo <= hi <= 1"
        raise ValueError(f"{prefix}: restriction {name}={value!r} is malformed; it must be null or {want}")
    return tuple(value)


def _decode(head: dict, prefix: str, f) -> object:
    if not isinstance(head, dict):
        raise TypeError(f"{prefix}: an intervention header must be a JSON object, got {head!r}")
    kind = head.get("type")
    if kind == "affine":
        names = [k for k in ("omega", "beta", "U", "V") if f"{prefix}::{k}" in f.keys()]
        parts = {k: f.get_tensor(f"{prefix}::{k}") for k in names}
        d = head.get("d")
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"{prefix}: header width d={d!r} must be a positive integer")
        try:
            return AffineMap.from_parts(head, parts)
        except (RuntimeError, TypeError, KeyError, IndexError) as e:  # e.g. torch's reshape error
            shapes = {k: tuple(t.shape) for k, t in parts.items()}
            raise ValueError(
                f"{prefix}: header kind={head.get('kind')!r}, d={d} does not match its tensors "
                f"{shapes} ({type(e).__name__}: {e})"
            ) from None
    if kind == "restricted":
        bounds = (f.get_tensor(f"{prefix}::lo"), f.get_tensor(f"{prefix}::hi")) if head.get("bounds") else None
        inner = _decode(head["inner"], prefix + "::inner", f)
        if bounds is not None and (
            any(tuple(b.shape) != (inner.d,) for b in bounds) or any(b.isnan().any() for b in bounds)
        ):
            raise ValueError(
                f"{prefix}: support bounds must be two NaN-free vectors of width {inner.d}, got shapes "
                f"{[tuple(b.shape) for b in bounds]}"
            )
        return Restricted(
            inner,
            head["scope"],
            _pair(head["steps"], "steps", prefix, True),
            _pair(head["t_range"], "t_range", prefix, False),
            bounds,
        )
    if kind == "schedule":
        return TimestepSchedule(
            [(lo, hi, _decode(h, f"{prefix}::{i}", f)) for i, (lo, hi, h) in enumerate(head["entries"])]
        )
    raise ValueError(f"unknown intervention type {kind!r} in plan file")


def write_plan_file(path, maps: dict[str, list], meta: dict, metadata: dict | None = None, model=None) -> None:
    """Encode `maps` (site -> interventions) and the plan's `meta`; `model` (optional) records the family,
    model id and each site's width alongside the maps."""
    from mdm_lens import __version__

    tensors: dict[str, torch.Tensor] = {}
    sites = {site: [_encode(m, f"{site}::{i}", tensors) for i, m in enumerate(ms)] for site, ms in maps.items()}
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "package_version": __version__,
        "sites": json.dumps(sites),
        "plan_meta": json.dumps(meta, default=str),
        "user": json.dumps(metadata or {}, default=str),
    }
    if model is not None:
        header["model"] = json.dumps(
            {
                "family": model.spec.name,
                "name_or_path": model.name_or_path,
                "site_widths": {s: model.site(s).width for s in maps},
            }
        )
    save_safetensors_atomic(tensors, path, header)


def read_plan_file(path) -> tuple[dict[str, list], dict]:
    """`(maps, meta)` of a plan file; meta carries the user metadata (`file_metadata`) and the recorded model."""
    p = Path(path)
    what = "an mdm-lens plan file"
    with open_safetensors(p, what) as f, reading(p, what):
        header = f.metadata() or {}
        if header.get("format") != FORMAT:
            raise ValueError(f"{p} is not an mdm-lens plan file (no '{FORMAT}' format tag in its metadata)")
        if header.get("version") != str(VERSION):
            raise ValueError(
                f"{p} is plan format version {header.get('version')!r}; this mdm-lens reads version "
                f"{VERSION!r} only. Re-save the plan with this mdm-lens, or use the mdm-lens that wrote "
                f"it (package_version {header.get('package_version')!r})"
            )
        sites = json.loads(header["sites"])
        if not isinstance(sites, dict) or not all(isinstance(hs, list) for hs in sites.values()):
            raise TypeError("'sites' must map each site name to a list of intervention headers")
        maps = {}
        for s, hs in sites.items():
            try:
                maps[s] = [_decode(h, f"{s}::{i}", f) for i, h in enumerate(hs)]
            except ValueError as e:  # non-finite map, malformed restriction: name file and site
                raise ValueError(f"{p}, site {s!r}: {e}") from None
        meta = json.loads(header.get("plan_meta", "{}"))
        meta["file_metadata"] = json.loads(header.get("user", "{}"))
        meta["model"] = _recorded_model(p, json.loads(header.get("model", "{}")))
    return maps, meta


def _recorded_model(path: Path, rec) -> dict:
    """The `model` entry `write_plan_file` records: family / name_or_path strings, site_widths site -> int."""

    def bad(what: str):
        return damaged_file(path, "an mdm-lens plan file", f"its 'model' entry {what} (got {json.dumps(rec)[:120]})")

    if not isinstance(rec, dict):
        raise bad("must be a JSON object")
    for key in ("family", "name_or_path"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise bad(f"has {key} {rec[key]!r}, not a string")
    widths = rec.get("site_widths")
    if widths is not None and not (
        isinstance(widths, dict)
        and all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths.values())
    ):
        raise bad("has site_widths that are not site -> positive integer")
    return rec
