"""The decode trace: which denoising step unmasked each position (and, when asked, the canvas after every step).

Samplers call `DecodeTrace.record(step, x)` once per step, after that step's writes. A position counts as
decoded at step s when it was the mask id in step s's input and is not in step s's output; the reference samplers
never re-mask a decoded position, so this is one compare per step (no sync, no copy unless history is kept).
A position a step "decodes" into the mask id itself stays masked and is decoded by a later step, or never (-1).
"""

from __future__ import annotations

import torch
from jaxtyping import Int


class DecodeTrace:
    """`decode_step` `[batch, total]`: the step that unmasked each position, -1 for never (prompt columns, and
    response columns still masked at the end); `history` (with `keep_history=True`): the canvas after each
    step, `[steps, batch, total]` once stacked by `history_tensor()`."""

    def __init__(self, mask_id: int, keep_history: bool = False):
        self.mask_id = int(mask_id)
        self.decode_step: Int[torch.Tensor, "b total"] | None = None
        self.history: list[torch.Tensor] | None = [] if keep_history else None
        self._pending: torch.Tensor | None = None

    def start(self, x: Int[torch.Tensor, "b total"]) -> None:
        """The initial canvas: its masked positions are the ones to decode."""
        self._pending = x == self.mask_id
        self.decode_step = torch.full(x.shape, -1, dtype=torch.long, device=x.device)

    def record(self, step: int, x: Int[torch.Tensor, "b total"]) -> None:
        """After step `step` wrote the canvas `x`."""
        if self._pending is None:
            raise RuntimeError("DecodeTrace.record before start(x): the sampler must show the initial canvas first")
        newly = self._pending & (x != self.mask_id)
        self.decode_step[newly] = int(step)
        self._pending &= ~newly
        if self.history is not None:
            self.history.append(x.detach().clone())

    def history_tensor(self) -> Int[torch.Tensor, "steps b total"] | None:
        if self.history is None:
            return None
        if not self.history:
            raise RuntimeError("no step recorded")
        return torch.stack(self.history)


def trace_for(trace: DecodeTrace | None, mask_id: int, return_history: bool) -> DecodeTrace | None:
    """The trace a sampler records into: the caller's, or a history-keeping one when it asked for history."""
    if trace is None:
        return DecodeTrace(mask_id, keep_history=True) if return_history else None
    if return_history and trace.history is None:
        raise ValueError(
            "return_history=True with a DecodeTrace(keep_history=False): build the trace with "
            "keep_history=True, or leave trace out"
        )
    return trace
