"""Pieces shared by the samplers: the step record and the clock that announces it, logits extraction."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch


@dataclass(frozen=True)
class StepInfo:
    """Where the sampler is, announced right before each model forward (to the model's clock and `on_step`)."""

    step: int  # global step index, 0 .. num_steps-1
    num_steps: int
    block: int  # semi-autoregressive block index (0 for samplers without blocks)
    num_blocks: int
    prompt_length: int  # prompt columns, left padding included
    gen_length: int
    sampler: str
    # [start, stop) canvas columns this forward computes; None = every column. A KV-cached sampler sets it
    # when the other columns come from its cache (announce once per forward with dataclasses.replace).
    computed: tuple[int, int] | None = None
    # Block diffusion (LLaDA2, BD3LM): [start, stop) canvas columns of the block being denoised (bidirectional
    # inside, causal across blocks), and the step within that block. None for samplers that denoise the whole
    # response at once (their `block` is a semi-autoregressive schedule over a fully bidirectional canvas).
    block_span: tuple[int, int] | None = None
    block_step: int | None = None
    block_num_steps: int | None = None


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


def resolve_mask_id(model, mask_id: int | None, reference_default: int) -> int:
    """The mask id a sampler uses: the one passed, else the model's own (`HookedMDM.mask_id`, or a config's
    `mask_token_id`), else the reference checkpoint's (`reference_default`, for a bare forward callable). A fixed
    default would index past the embedding table of any other vocabulary."""
    if mask_id is not None:
        return int(mask_id)
    own = getattr(model, "mask_id", None)
    if own is None:
        own = getattr(getattr(model, "config", None), "mask_token_id", None)
    return int(own) if isinstance(own, int) and own >= 0 else reference_default


def check_prompt(prompt: torch.Tensor, mask_id: int) -> None:
    if prompt.dim() != 2:
        raise ValueError(f"prompt must be a [batch, length] tensor of token ids, got shape {tuple(prompt.shape)}")
    if bool((prompt == mask_id).any()):
        rows = sorted(set((prompt == mask_id).nonzero()[:, 0].tolist()))
        raise ValueError(
            f"prompt rows {rows} contain the mask token id {mask_id}; the sampler would treat "
            "them as positions to generate. Remove it (or pad with another id)"
        )


def check_kwargs(fn, kwargs: dict, fixed: set[str]) -> None:
    """Refuse sampler options `fn` does not take, listing the valid ones (a typo must not be dropped silently)."""
    import inspect

    valid = set(inspect.signature(fn).parameters) - fixed
    bad = sorted(set(kwargs) - valid)
    if bad:
        raise TypeError(f"unknown sampler option(s) {bad} for {fn.__name__}; valid options: {sorted(valid)}")


class CachedForwards:
    """The per-forward bookkeeping both KV-cached samplers share, so their loops hold only the algorithm: before
    each forward, record what the previous forward decoded (`trace`), announce this forward's StepInfo with the
    columns it computes, count forwards and computed query columns (`stats`: what the cache saves)."""

    def __init__(
        self,
        model,
        canvas: torch.Tensor,
        announce: Callable[[StepInfo], None],
        trace,
        *,
        bound: int,
        num_blocks: int,
        prompt_length: int,
        gen_length: int,
        sampler: str,
        attention_mask: torch.Tensor | None = None,
    ):
        self.model, self.canvas, self.announce, self.trace = model, canvas, announce, trace
        self.head = (bound, num_blocks, prompt_length, gen_length, sampler)
        self.attention_mask = attention_mask
        self.step = 0
        self.stats = {"forwards": 0, "columns": 0}
        if trace is not None:
            trace.start(canvas)

    def __call__(self, ids: torch.Tensor, computed: tuple[int, int] | None, block: int, **kw):
        bound, num_blocks, plen, gen_length, sampler = self.head
        if self.trace is not None and self.step > 0:  # the previous forward's writes are all in the canvas
            self.trace.record(self.step - 1, self.canvas)
        self.announce(StepInfo(self.step, bound, block, num_blocks, plen, gen_length, sampler, computed=computed))
        self.step += 1
        self.stats["forwards"] += 1
        self.stats["columns"] += ids.shape[0] * ids.shape[1]
        if self.attention_mask is not None:
            kw["attention_mask"] = self.attention_mask
        return self.model(ids, **kw)

    def finish(self, stats: dict | None) -> None:
        """After the loop: the last forward's decodes into the trace, the counts into `stats`."""
        if self.trace is not None and self.step > 0:
            self.trace.record(self.step - 1, self.canvas)
        if stats is not None:
            stats.update(self.stats)
