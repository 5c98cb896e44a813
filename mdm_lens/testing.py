"""Helpers for testing code built on mdm-lens, offline and in seconds: the same ones our own tests use.

- `tiny_config(family)`: a config.json dict of a tiny model (d 64, 2 layers) in the family's own field names
  (declared by the family's file: `FamilySpec.tiny_config`; production code takes it from `mdm_lens.families`);
  `HookedMDM.from_config(tiny_config("llada"))` is a random model of that family.
- `build_test_tokenizer(style=...)`: a word-level `PreTrainedTokenizerFast` with the family's special tokens
  and chat template, whose ids agree with `tiny_config`; nothing touches the network.
- `tiny_model(family)`: both together, as a `HookedMDM`.
- `save_tiny_checkpoint(folder, family)`: a random tiny model written in hub layout (config.json,
  safetensors, tokenizer files), loadable by `HookedMDM.from_pretrained(folder)` and the CLI.
- `hub_key_names(family, cfg)`: the parameter names a hub checkpoint of that config holds.

    from mdm_lens.testing import tiny_model
    model = tiny_model("llada")
    out = model.generate(["hello world"], gen_length=8, steps=8, block_length=8)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .families import FAMILIES, tiny_config
from .tiny_tokenizer import build_test_tokenizer, tiny_token_ids


def tiny_model(family: str = "llada", seed: int = 0, **overrides: Any):
    """A random tiny `HookedMDM` of `family`, with the offline tokenizer where the family has one."""
    from .hooked import HookedMDM

    cfg = tiny_config(family, **overrides)
    style = FAMILIES[family].tokenizer_style
    tok = build_test_tokenizer(style=style, vocab_size=cfg["vocab_size"]) if style else None
    return HookedMDM.from_config(cfg, tokenizer=tok, seed=seed)


def save_tiny_checkpoint(
    folder: str | os.PathLike, family: str = "llada", seed: int = 0, shard_size: int | None = None, **overrides: Any
) -> Path:
    """Write a random tiny model of `family` in hub layout into `folder`; returns the folder."""
    from .loading import save_pretrained

    model = tiny_model(family, seed=seed, **overrides)
    save_pretrained(model.model, model.tokenizer, model.config, folder, shard_size=shard_size)
    return Path(folder)


def hub_key_names(family: str, cfg: Any) -> list[str]:
    """Sorted parameter names of a hub checkpoint of `cfg` (the family's parsed config object)."""
    spec = FAMILIES.get(family)
    if spec is None or spec.hub_keys is None:
        have = sorted(n for n, s in FAMILIES.items() if s.hub_keys is not None)
        raise ValueError(f"no hub key list for family {family!r}; use one of {have}")
    return spec.hub_keys(cfg)


__all__ = [
    "tiny_config",
    "tiny_model",
    "save_tiny_checkpoint",
    "build_test_tokenizer",
    "tiny_token_ids",
    "hub_key_names",
]
