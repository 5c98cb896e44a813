"""The step context: where in the denoising loop a hook call happens."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool


_SCOPE_FIELDS = {"prompt": "prompt_mask", "response": "response_mask", "masked": "masked",
                 "predicts_masked": "predicts_masked", "padding": "padding"}
SCOPES = ("all", *_SCOPE_FIELDS)


@dataclass
class StepContext:
    """Passed to every hook call.

    Outside a sampler (a plain forward) `in_sampler` is False and step / num_steps / t / block are None.
    Masks are `[batch, pos]` over the rows of the forward actually run (CFG doubles the batch, reference
    alignment appends rows: `main_rows` says how many leading rows are the generation itself).
    `predicts_masked` marks positions whose hidden state predicts a still-masked token: equal to `masked`
    for LLaDA, shifted one position left for Dream (its logits at j-1 predict token j).
    """

    in_sampler: bool
    step: int | None
    num_steps: int | None
    t: float | None
    block: int | None
    num_blocks: int | None
    prompt_mask: Bool[torch.Tensor, "batch pos"]
    response_mask: Bool[torch.Tensor, "batch pos"]
    masked: Bool[torch.Tensor, "batch pos"]
    padding: Bool[torch.Tensor, "batch pos"]
    predicts_masked: Bool[torch.Tensor, "batch pos"]
    main_rows: int
    input_ids: torch.Tensor | None = None
    _on_device: dict = field(default_factory=dict, repr=False)

    def scope_mask(self, scope: str, device: torch.device | None = None) -> Bool[torch.Tensor, "batch pos"]:
        """Boolean mask for a token scope: all / prompt / response / masked / predicts_masked."""
        key = (scope, device)
        hit = self._on_device.get(key)
        if hit is not None:
            return hit
        if scope == "all":
            m = ~self.padding
        elif scope in _SCOPE_FIELDS:
            m = getattr(self, _SCOPE_FIELDS[scope])
        else:
            raise ValueError(
                f"unknown token scope {scope!r}; use one of 'all', 'prompt', 'response', 'masked', 'predicts_masked'")
        if device is not None and m.device != device:
            m = m.to(device)
        self._on_device[key] = m
        return m


def build_context(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, mask_id: int, *,
                  prompt_length: int | None, logits_shift: bool, main_rows: int | None = None,
                  step: int | None = None, num_steps: int | None = None, block: int | None = None,
                  num_blocks: int | None = None) -> StepContext:
    """Derive every mask from the ids actually fed to the model (so CFG / extra rows are covered).

    Without `prompt_length` (a plain forward) every non-padding position counts as prompt.
    """
    bsz, pos = input_ids.shape
    padding = (attention_mask == 0) if attention_mask is not None else torch.zeros_like(input_ids, dtype=torch.bool)
    if attention_mask is not None and attention_mask.dim() != 2:
        padding = torch.zeros_like(input_ids, dtype=torch.bool)
    if prompt_length is None:
        response = torch.zeros_like(padding)
    else:
        response = (torch.arange(pos, device=input_ids.device) >= prompt_length).expand(bsz, pos)
    prompt = ~response & ~padding
    is_mask = input_ids == mask_id
    masked = is_mask & response if prompt_length is not None else is_mask
    if logits_shift:
        predicts = torch.zeros_like(masked)
        predicts[:, :-1] = masked[:, 1:]
    else:
        predicts = masked
    rows = bsz if main_rows is None else main_rows
    t = None
    if prompt_length is not None:
        n_resp = response[:rows].sum()
        t = float(masked[:rows].sum() / n_resp) if int(n_resp) > 0 else 0.0
    return StepContext(
        in_sampler=step is not None, step=step, num_steps=num_steps, t=t, block=block,
        num_blocks=num_blocks, prompt_mask=prompt, response_mask=response, masked=masked, padding=padding,
        predicts_masked=predicts, main_rows=rows, input_ids=input_ids)
