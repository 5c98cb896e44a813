"""Trained tiny model organisms shipped with the package, loadable by short name."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if (p / "config.json").is_file())


def resolve(name: str) -> str | None:
    """Folder of a packaged organism, or None when `name` is not one (a hub id or a path)."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = ROOT / name
    return str(folder) if (folder / "config.json").is_file() else None


def default_organism() -> str:
    """The organism the demo and the studies use: `tiny-mdm` (v2: follows some instructions, refuses harmful
    requests, has a sentiment to move) when packaged, else `tiny-if` (instructions only)."""
    return "tiny-mdm" if "tiny-mdm" in available() else "tiny-if"
