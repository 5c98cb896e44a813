"""Checks made when a model folder is loaded, so a damaged or hand-edited folder fails at load naming the file,
not later inside torch or at the first `generate` (issue 20, point 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def check_name(name_or_path: Any) -> None:
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise ValueError(
            f"from_pretrained({name_or_path!r}): give a model folder, a packaged organism name (e.g. "
            "'tiny-mdm') or a hub id (owner/name); an empty name would mean the current folder"
        )


def check_chat_template(tokenizer, folder: Path) -> None:
    """Render the template once: a broken chat_template.jinja fails here, naming the file."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return
    try:
        tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
    except Exception as e:
        where = folder / "chat_template.jinja" if (folder / "chat_template.jinja").is_file() else folder
        raise ValueError(
            f"the chat template of {where} does not render ({type(e).__name__}: {e}); fix or restore "
            "it (prompts with chat=True go through it)"
        ) from None


def check_sampler_entry(config: dict, folder: Path) -> None:
    saved = config.get("mdm_lens_sampler")
    if saved is None:
        return
    if not isinstance(saved, dict):
        raise ValueError(
            f"{folder / 'config.json'}: mdm_lens_sampler={saved!r} must be an object of sampler "
            'settings, e.g. {"steps": 64, "temperature": 0.0}'
        )
    from .generation import check_sampler_settings

    check_sampler_settings(dict(saved), {k: f"{folder / 'config.json'} mdm_lens_sampler" for k in saved})


def check_mask_id(mask_id: Any, vocab: int | None, folder: Path) -> None:
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or vocab is not None and not 0 <= mask_id < vocab:
        raise ValueError(
            f"{folder / 'config.json'}: mask_token_id={mask_id!r} is not a token id of this model "
            f"(vocabulary [0, {vocab})); set it to the tokenizer's mask token id"
        )


def check_tensor_dtype(key: str, tensor: torch.Tensor, expected: torch.dtype | None, file: Path) -> None:
    if expected is not None and expected.is_floating_point and not tensor.is_floating_point():
        raise ValueError(
            f"{file}: tensor {key!r} is {tensor.dtype}, but the model's parameter is floating point; "
            "the checkpoint is damaged or was written by another tool: re-save it with floating weights"
        )
