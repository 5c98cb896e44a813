"""Schedule replay: force a generation's unmasking order onto another run.

Why: a masked diffusion model builds its answer over many steps, and two runs (clean / corrupted, steered /
unsteered) unmask positions in different orders, so comparing (or patching between) their step-s states compares
unlike canvases. A replayed run decodes exactly the positions the replayed run decoded at each step:

* `mode="order"`: the positions are fixed, the tokens are the sampler's own (an intervention can change *what*
  is written, not *where* or *when*);
* `mode="teacher"`: the replayed run's tokens are written in too, so every step's canvas equals the original's
  and only the forward passes differ (what activation patching across steps needs: like-for-like states).

With no intervention an order replay is token-equal to the run it replays (the sampler proposes the same tokens
at the same positions), and so trivially is a teacher replay. A sampler takes the bound form (`Replay`) as
`replay=` and calls `select(step, proposal, take)` right before each write of the canvas; everything else (the
model's forwards, the random draws) runs as without replay, so the random stream stays aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int

MODES = ("order", "teacher")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(
            f"replay_mode={mode!r}; use 'order' (positions fixed, tokens free) or 'teacher' (the "
            "replayed run's tokens written in too)"
        )
    return mode


@dataclass(frozen=True)
class Schedule:
    """Which response position was unmasked at which step (`decode_step`, -1 = never), and to which token.

    Response-relative columns (`[batch, gen]`), as `GenerationOutput.decode_step` / `.tokens` hold them; `bind`
    places them on a canvas after the prompt."""

    decode_step: Int[torch.Tensor, "b gen"]
    tokens: Int[torch.Tensor, "b gen"]

    def __post_init__(self):
        if self.decode_step.shape != self.tokens.shape or self.decode_step.dim() != 2:
            raise ValueError(
                f"Schedule: decode_step {tuple(self.decode_step.shape)} and tokens "
                f"{tuple(self.tokens.shape)} must both be [batch, gen]"
            )

    @classmethod
    def from_output(cls, out) -> Schedule:
        """From a `GenerationOutput` (`model.generate(...)`); it carries the decode trace."""
        if isinstance(out, Schedule):
            return out
        step = getattr(out, "decode_step", None)
        if step is None or getattr(out, "tokens", None) is None:
            raise TypeError(
                f"replay= takes a GenerationOutput from model.generate (it carries the decode trace) or "
                f"a Schedule; got a {type(out).__name__} without decode_step / tokens"
            )
        return cls(step.detach().cpu().long(), out.tokens.detach().cpu().long())

    @property
    def num_steps(self) -> int:
        """Steps the replayed run took (1 + the last decode step)."""
        return int(self.decode_step.max()) + 1

    @property
    def gen_length(self) -> int:
        return int(self.decode_step.shape[1])

    def positions_at(self, step: int) -> Bool[torch.Tensor, "b gen"]:
        """Response positions the replayed run unmasked at `step`."""
        return self.decode_step == int(step)

    def bind(self, prompt_length: int, batch: int, total: int, device, mode: str = "order") -> Replay:
        """The sampler-side form on a `[batch, total]` canvas whose response starts at `prompt_length`."""
        check_mode(mode)
        if batch != self.decode_step.shape[0]:
            raise ValueError(
                f"replay: the schedule has {self.decode_step.shape[0]} rows, the prompts {batch}; "
                "replay a run with the same number of prompts"
            )
        if total - prompt_length != self.gen_length:
            raise ValueError(
                f"replay: the schedule covers {self.gen_length} response positions, this run "
                f"generates {total - prompt_length}; use the replayed run's gen_length"
            )
        step = torch.full((batch, total), -1, dtype=torch.long)
        tok = torch.zeros((batch, total), dtype=torch.long)
        step[:, prompt_length:] = self.decode_step
        tok[:, prompt_length:] = self.tokens
        return Replay(step.to(device), tok.to(device), mode)


class Replay:
    """A schedule laid on a canvas; samplers call `select` before each write."""

    def __init__(self, step: Int[torch.Tensor, "b total"], tokens: Int[torch.Tensor, "b total"], mode: str):
        self.step, self.tokens, self.mode = step, tokens, check_mode(mode)

    def select(
        self,
        step: int,
        proposal: Int[torch.Tensor, "b n"],
        take: Bool[torch.Tensor, "b n"] | None = None,
        start: int = 0,
    ) -> tuple[Int[torch.Tensor, "b n"], Bool[torch.Tensor, "b n"]]:
        """-> (tokens, which columns take them) for canvas columns [start, start + n) at `step`: the schedule's
        positions replace the sampler's choice `take`; in teacher mode its tokens replace the proposal there."""
        n = proposal.shape[1]
        want = self.step[:, start : start + n] == int(step)
        if self.mode == "teacher":
            proposal = torch.where(want, self.tokens[:, start : start + n], proposal)
        return proposal, want


def replayed(
    replay: Replay | None, step: int, proposal: torch.Tensor, take: torch.Tensor, start: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The samplers' one-line hook: `(proposal, take)` unchanged without replay, else `replay.select(...)`."""
    return (proposal, take) if replay is None else replay.select(step, proposal, take, start)
