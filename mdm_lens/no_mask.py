"""Families without a mask token (DiffusionGemma): one error for every API that assumes one.

A masked diffusion model marks "still to decide" positions with a mask id; `masked` / `predicts_masked` scopes,
`t`, the Monte-Carlo likelihood, mask-filled canvases (`masked_batch`), unmasking schedules and patching "the
masked positions" are all defined by it. DiffusionGemma has none (`FamilySpec.default_mask_id == -1`): its canvas
starts as uniform-random tokens and the sampler re-noises what it does not accept. Comparing ids with -1 would
silently give "nothing is masked"; these APIs raise `NoMaskTokenError` instead, naming the family, the reason and
what to use. Inside `model.generate` on DiffusionGemma the step context is a `CanvasContext`, whose `masked` is
defined (positions holding fresh noise), so hooks reading `ctx.masked` / `ctx.t` during generation keep working.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NoMaskTokenError", "has_mask_token", "require_mask_token", "no_mask_message"]


class NoMaskTokenError(ValueError):
    """An API that needs a mask token was called on a family that has none (a uniform-noise canvas)."""


def no_mask_message(family: str | None, what: str) -> str:
    name = family or "this model"
    return (
        f"{what} needs a mask token, but {name} has none (mask_id=-1): its canvas starts as uniform-random tokens "
        "and re-noises what the sampler does not accept, so no position is 'masked' in the input ids. Use the "
        "'response' / 'prompt' / 'all' scopes or explicit positions; during model.generate on this family "
        "ctx.masked / ctx.t / the 'masked' scope mean the positions holding fresh noise (CanvasContext)"
    )


def _mask_id(model: Any) -> int:
    mask_id = getattr(model, "mask_id", None)
    if mask_id is None and getattr(model, "spec", None) is not None:
        mask_id = model.spec.default_mask_id
    return -1 if mask_id is None else int(mask_id)


def has_mask_token(model: Any) -> bool:
    """Whether a HookedMDM (or anything with `mask_id`) has a mask token (ids are >= 0)."""
    return _mask_id(model) >= 0


def require_mask_token(model: Any, what: str) -> int:
    """The model's mask id, or NoMaskTokenError naming `what` (the API) and the family."""
    mask_id = _mask_id(model)
    if mask_id < 0:
        spec = getattr(model, "spec", None)
        raise NoMaskTokenError(no_mask_message(getattr(spec, "name", None), what))
    return mask_id
