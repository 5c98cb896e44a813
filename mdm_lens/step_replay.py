"""Whether one denoising step can be replayed by a plain full forward of the canvas it read.

The per-step logit lens (`analyses.logit_lens`) and the trace viewer (`analyses.view`) do not cache during
generation: they re-run step s's input canvas through `run_with_cache` afterwards. That is the sampler's own
forward only when the sampler itself runs a full forward over `[prompt, response]` with padding-only attention
masks (LLaDA, Dream, LLaDA-MoE, A2D under MDLM). Block diffusion (LLaDA2, A2D under BD3LM) runs each step over
a growing window under a block-causal mask, so a full forward would show activations the sampler never computed.

Each family says so in `FamilySpec.step_forward_refusal(settings)`; this module is the one place the analyses
ask it, and where the shared refusal wording lives (the families import it).
"""

from __future__ import annotations

from typing import Any

from .no_mask import require_mask_token

FIX = (
    "record the sampler's own activations instead, with model.cache_steps([...]) (or hooks) around model.generate(...)"
)


def block_causal_reason(family: str, sampler: str) -> str:
    """The refusal of a block-diffusion run: why a full forward differs from what its sampler computed."""
    return (
        f"the {family} family's {sampler} sampler is block diffusion: each step's forward runs over the window "
        "up to the current block under a block-causal mask (bidirectional inside a block, causal across blocks), "
        "so a full bidirectional forward of the step's canvas is not what the sampler computed"
    )


def check_full_forward_replay(model: Any, settings: dict[str, Any], what: str) -> int:
    """Refuse `what` (the analysis) where a full forward of a step's canvas is not the sampler's own forward
    under `settings` (the run's merged sampler settings); return the logit shift the replay must read with:
    1 where the state at j-1 predicts token j (Dream, or dllm's `right_shift_logits`), else 0."""
    require_mask_token(model, what)
    spec = model.spec
    reason = spec.step_forward_refusal(settings) if spec.step_forward_refusal is not None else None
    if reason is not None:
        raise NotImplementedError(f"{what} replays each step as a full forward, which is refused here: {reason}. {FIX}")
    return 1 if spec.logits_shift or bool(settings.get("right_shift_logits", False)) else 0
