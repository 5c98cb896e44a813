"""Pieces shared by the samplers: the step record passed to `on_step`, and logits extraction."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepInfo:
    """Where the sampler is, handed to `on_step` right before each model forward."""

    step: int            # global step index, 0 .. num_steps-1
    num_steps: int
    block: int           # semi-autoregressive block index (0 for samplers without blocks)
    num_blocks: int
    prompt_length: int   # prompt columns, left padding included
    gen_length: int
    sampler: str


def logits_of(out) -> torch.Tensor:
    """Samplers accept callables returning logits or an object with `.logits`."""
    return out.logits if hasattr(out, "logits") else out


def check_prompt(prompt: torch.Tensor, mask_id: int) -> None:
    if prompt.dim() != 2:
        raise ValueError(f"prompt must be a [batch, length] tensor of token ids, got shape {tuple(prompt.shape)}")
    if bool((prompt == mask_id).any()):
        rows = sorted(set((prompt == mask_id).nonzero()[:, 0].tolist()))
        raise ValueError(f"prompt rows {rows} contain the mask token id {mask_id}; the sampler would treat "
                         "them as positions to generate. Remove it (or pad with another id)")
