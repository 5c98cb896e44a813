"""Step states of a replayed run: the canvases a generation visited, and the clean activations at each step.

Patching across denoising steps needs like-for-like states: at step s the corrupted run must see the same response
canvas as the clean run (else a patch compares unlike states; docs/causal.md). A teacher-forced replay of the clean
run (`mdm_lens.sampling.replay`) visits exactly the canvases built here from its decode trace, so one forward per
step on `canvas(s)` reproduces what the sampler's step s computes, without running the sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Int

from mdm_lens.activation_cache import ActivationCache
from mdm_lens.sampling.common import StepInfo
from mdm_lens.sampling.replay import Schedule


@dataclass
class ReplayedRun:
    """A clean generation's schedule, its prompt, and (once `cache`d) the clean activations at each step."""

    schedule: Schedule
    prompt: Int[torch.Tensor, "b p"]
    attention_mask: torch.Tensor | None
    mask_id: int
    num_steps: int
    caches: dict[int, ActivationCache] = field(default_factory=dict)

    @classmethod
    def of(cls, model, out, num_steps: int | None = None) -> ReplayedRun:
        """From `out = model.generate(...)` (any sampler of LLaDA / Dream: it carries the decode trace)."""
        from mdm_lens.step_replay import check_full_forward_replay

        # one full forward per step must be what the sampler computed: block diffusion is refused (its settings
        # as the checkpoint / recommended give them: a per-call variant= is not recorded in `out`)
        what = "ReplayedRun (re-masks each step's undecided positions)"
        check_full_forward_replay(model, model.sampler_settings(), what)
        sched = Schedule.from_output(out)
        n = sched.num_steps if num_steps is None else int(num_steps)
        am = out.attention_mask[:, : out.prompt_length] if out.attention_mask is not None else None
        return cls(sched, out.sequences[:, : out.prompt_length].clone(), am, int(model.mask_id), n)

    @property
    def prompt_length(self) -> int:
        return int(self.prompt.shape[1])

    def response_before(self, step: int) -> Int[torch.Tensor, "b gen"]:
        """The response canvas step `step` reads: tokens decoded at earlier steps, masks elsewhere."""
        d = self.schedule.decode_step
        done = (d >= 0) & (d < int(step))
        return torch.where(done, self.schedule.tokens, torch.full_like(d, self.mask_id))

    def canvas(self, step: int, prompt: torch.Tensor | None = None) -> Int[torch.Tensor, "b total"]:
        """`prompt` (default: the clean one; a corrupted prompt of the same shape) + the response before `step`."""
        p = self.prompt if prompt is None else prompt
        if p.shape != self.prompt.shape:
            raise ValueError(
                f"the corrupted prompt has shape {tuple(p.shape)}, the replayed run's {tuple(self.prompt.shape)};"
                " patching compares like positions: make both prompts the same length (pad or reword)"
            )
        return torch.cat([p.cpu(), self.response_before(step)], dim=1)

    def mask(self) -> torch.Tensor | None:
        if self.attention_mask is None:
            return None
        gen = self.schedule.gen_length
        return torch.cat(
            [self.attention_mask, torch.ones(self.prompt.shape[0], gen, dtype=self.attention_mask.dtype)], 1
        )

    def info(self, step: int) -> StepInfo:
        return StepInfo(int(step), self.num_steps, 0, 1, self.prompt_length, self.schedule.gen_length, "replay")

    def check_steps(self, steps) -> list[int]:
        """`steps`: an int, a sequence, a range or "all" -> sorted list within [0, num_steps)."""
        chosen = list(range(self.num_steps)) if steps == "all" else [steps] if isinstance(steps, int) else list(steps)
        bad = [s for s in chosen if not 0 <= int(s) < self.num_steps]
        if bad or not chosen:
            raise ValueError(
                f"steps={steps!r}: the replayed run has steps 0..{self.num_steps - 1}; pass one of them, a "
                "list / range of them, or 'all'"
            )
        return [int(s) for s in chosen]

    def cache(self, model, names: Sequence[str], steps="all", device: str = "cpu") -> ReplayedRun:
        """Clean activations at `names` for each step (one forward per step on the clean canvas)."""
        for s in self.check_steps(steps):
            if s in self.caches and all(n in self.caches[s] for n in names):
                continue
            with at_step(model, self, s):
                _, c = model.run_with_cache(
                    self.canvas(s).to(model.input_device),
                    names_filter=list(names),
                    attention_mask=_dev(self.mask(), model),
                    device=device,
                )
            self.caches[s] = c
        return self


def _dev(t, model):
    return None if t is None else t.to(model.input_device)


class at_step:
    """`with at_step(model, run, s):` the model's step clock announces step s of the replayed run (hooks read
    `ctx.step`, `ctx.t`; `model.step_info` is set), restored on exit."""

    def __init__(self, model, run: ReplayedRun, step: int):
        self.model, self.run, self.step = model, run, step
        self._cm = None

    def __enter__(self):
        self._cm = self.model.step_clock.running()
        announce = self._cm.__enter__()
        announce(self.run.info(self.step))
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def iter_steps(run: ReplayedRun, steps) -> Iterator[int]:
    yield from run.check_steps(steps)
