"""Pieces shared by the samplers: the step record and the clock that announces it, logits extraction."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch


@dataclass(frozen=True)
class StepInfo:
    """Where the sampler is, announced right before each model forward (to the model's clock and `on_step`)."""

    step: int            # global step index, 0 .. num_steps-1
    num_steps: int
    block: int           # semi-autoregressive block index (0 for samplers without blocks)
    num_blocks: int
    prompt_length: int   # prompt columns, left padding included
    gen_length: int
    sampler: str
    # [start, stop) canvas columns this forward computes; None = every column. A KV-cached sampler sets it
    # when the other columns come from its cache (announce once per forward with dataclasses.replace).
    computed: tuple[int, int] | None = None


class StepClock:
    """The denoising loop's position on a model: samplers announce each step, hooks read it.

    It lives on the model (`HookedMDM.step_clock`) so any loop (`model.generate`, `llada_generate(model, ...)`
    called directly, the nnsight envelope, a cached sampler) gives hooks the same step context.
    """

    def __init__(self) -> None:
        self._info: StepInfo | None = None

    @property
    def info(self) -> StepInfo | None:
        """The step of the forward about to run; None outside a sampler."""
        return self._info

    def announce(self, info: StepInfo) -> None:
        self._info = info

    @contextmanager
    def running(self) -> Iterator[Callable[[StepInfo], None]]:
        """One generation: yields `announce`; the previous step (None at top level) is restored on exit."""
        prev = self._info
        try:
            yield self.announce
        finally:
            self._info = prev


@contextmanager
def announcing(model, on_step: Callable[[StepInfo], None] | None = None) -> Iterator[Callable[[StepInfo], None]]:
    """What samplers wrap their loop in: yields `announce(info)`, which sets the model's `StepClock` (when the
    forward callable carries one as `.step_clock`) and then calls `on_step`."""
    clock = getattr(model, "step_clock", None)
    if not isinstance(clock, StepClock):
        yield (on_step if on_step is not None else _ignore)
        return
    with clock.running() as tick:
        if on_step is None:
            yield tick
        else:
            def announce(info: StepInfo) -> None:
                tick(info)
                on_step(info)
            yield announce


def _ignore(info: StepInfo) -> None:
    return None


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


def check_kwargs(fn, kwargs: dict, fixed: set[str]) -> None:
    """Refuse sampler options `fn` does not take, listing the valid ones (a typo must not be dropped silently)."""
    import inspect
    valid = set(inspect.signature(fn).parameters) - fixed
    bad = sorted(set(kwargs) - valid)
    if bad:
        raise TypeError(f"unknown sampler option(s) {bad} for {fn.__name__}; valid options: {sorted(valid)}")
