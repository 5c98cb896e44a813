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
    """The organism the demo and the studies use: `smol-mdm` (SmolLM2-135M-Instruct converted to masked
    diffusion, corpus v3) when packaged, else `tiny-mdm` (v2: follows some instructions, refuses harmful requests,
    has a sentiment to move), else `tiny-if` (instructions only)."""
    have = available()
    return next((n for n in ("smol-mdm", "tiny-mdm") if n in have), "tiny-if")
