"""The step context: where in the denoising loop a hook call happens."""

from __future__ import annotations

from functools import cached_property

import torch
from jaxtyping import Bool

from .sampling.common import StepInfo

_SCOPE_FIELDS = {
    "prompt": "prompt_mask",
    "response": "response_mask",
    "masked": "masked",
    "predicts_masked": "predicts_masked",
    "padding": "padding",
}
# The one token-scope vocabulary: plans, restrictions, caches, collection, sweeps and the CLI accept these.
SCOPES = ("all", *_SCOPE_FIELDS)
_RETIRED = {"full": "all", "both": "all"}


def check_scope(scope: str) -> str:
    """`scope` if it is one of SCOPES, else a ValueError naming the valid ones (and the new word for old ones)."""
    if scope in SCOPES:
        return scope
    hint = f'; {scope!r} is now spelled "{_RETIRED[scope]}"' if scope in _RETIRED else ""
    raise ValueError(f"unknown token scope {scope!r}; use one of {SCOPES}{hint}")


class StepContext:
    """Passed to every hook call; masks are derived lazily from the ids actually fed to the model.

    `site` is the name the hook being called was attached under (a canonical name, or the alias it was given;
    set before each call, so one fn can serve many sites); `info` is the sampler's StepInfo (None in a plain forward).
    Outside a sampler (a plain forward) `in_sampler` is False and step / num_steps / block are None
    (t too, unless a `prompt_length` was given). Masks are `[batch, pos]` over the rows of the forward
    actually run (CFG doubles the batch, reference alignment appends rows: `main_rows` says how many
    leading rows are the generation itself). `predicts_masked` marks positions whose hidden state
    predicts a still-masked token: `masked` for LLaDA, shifted one left for Dream (logits at j-1 predict j).
    Nothing is computed until a hook reads it, so hooks that ignore the context cost nothing extra.
    """

    def __init__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        mask_id: int,
        *,
        prompt_length: int | None,
        logits_shift: bool,
        main_rows: int | None = None,
        info: StepInfo | None = None,
        step: int | None = None,
        num_steps: int | None = None,
        block: int | None = None,
        num_blocks: int | None = None,
        family: str | None = None,
    ):
        self.input_ids = input_ids
        self.family = family  # named in errors (a family without a mask token)
        self.attention_mask = attention_mask
        self.mask_id = mask_id
        if info is not None:
            step, num_steps, block, num_blocks = info.step, info.num_steps, info.block, info.num_blocks
            prompt_length = info.prompt_length if prompt_length is None else prompt_length
        self.prompt_length = prompt_length
        self.logits_shift = logits_shift
        self.main_rows = input_ids.shape[0] if main_rows is None else main_rows
        self.info = info
        self.step, self.num_steps, self.block, self.num_blocks = step, num_steps, block, num_blocks
        self.site: str | None = None
        self.in_sampler = step is not None
        self._on_device: dict = {}

    def __repr__(self) -> str:
        try:
            t: object = self.t
        except ValueError:  # NoMaskTokenError: t is undefined without a mask token
            t = "undefined (no mask token)"
        return (
            f"StepContext(site={self.site!r}, step={self.step}, num_steps={self.num_steps}, t={t}, "
            f"block={self.block}, shape={tuple(self.input_ids.shape)}, main_rows={self.main_rows})"
        )

    @cached_property
    def padding(self) -> Bool[torch.Tensor, "batch pos"]:
        am = self.attention_mask
        if am is not None and am.dim() == 4 and am.dtype == torch.bool:  # BD3LM's block-causal mask:
            am = am.any(dim=-2).any(dim=1)  # a key column no query may see is padding
        elif am is not None and am.dim() == 4 and self.block_span is not None:
            # block diffusion (LLaDA2) passes its 4-D block mask, which hides padded keys from every query but
            # their own; the last query row sees every other key of the window, so the keys hidden from it are pads
            row = am[:, 0, -1, -self.input_ids.shape[1] :].to(self.input_ids.device)
            pads = row == float("-inf") if row.dtype.is_floating_point else ~row.bool()
            return pads.expand(self.input_ids.shape).clone()
        if am is None or am.dim() != 2:
            return torch.zeros_like(self.input_ids, dtype=torch.bool)
        if am.shape[1] != self.input_ids.shape[1]:  # a canvas-wide mask for a cached forward's columns
            am = am[:, self.first_column : self.first_column + self.input_ids.shape[1]]
        return am.to(self.input_ids.device) == 0

    @cached_property
    def response_mask(self) -> Bool[torch.Tensor, "batch pos"]:
        bsz, pos = self.input_ids.shape
        if self.prompt_length is None:
            return torch.zeros((bsz, pos), dtype=torch.bool, device=self.input_ids.device)
        cols = torch.arange(self.first_column, self.first_column + pos, device=self.input_ids.device)
        return (cols >= self.prompt_length).expand(bsz, pos)

    @cached_property
    def first_column(self) -> int:
        """Canvas column of `input_ids[:, 0]`: `info.computed[0]` when a KV-cached forward feeds only the
        columns it computes (masks then cover those columns), else 0."""
        c = self.info.computed if self.info is not None else None
        return c[0] if c is not None and self.input_ids.shape[1] == c[1] - c[0] else 0

    @property
    def computed(self) -> tuple[int, int]:
        """[start, stop) canvas columns this forward computes, the ones hooks see: a KV-cached forward's block
        (dual cache) or block + suffix (prefix cache); (0, width) for a full forward."""
        return self.first_column, self.first_column + self.input_ids.shape[1]

    @property
    def cached(self) -> list[tuple[int, int]]:
        """[start, stop) canvas column spans whose keys/values this forward reads from a KV cache (hooks never
        see them; they hold what the hooks did at the block's full forward): the prefix before the block, and
        under the dual cache the suffix after it. [] for a full forward."""
        if self.info is None or self.info.computed is None:
            return []
        start, stop = self.computed
        total = self.info.prompt_length + self.info.gen_length
        if self.info.block_span is not None:  # block diffusion attends to nothing after the block: none cached
            total = stop
        return [span for span in ((0, start), (stop, total)) if span[1] > span[0]]

    @cached_property
    def prompt_mask(self) -> Bool[torch.Tensor, "batch pos"]:
        return ~self.response_mask & ~self.padding

    @cached_property
    def masked(self) -> Bool[torch.Tensor, "batch pos"]:
        if self.mask_id < 0:  # no mask token (DiffusionGemma): "masked" would silently be empty
            from .no_mask import NoMaskTokenError, no_mask_message

            raise NoMaskTokenError(no_mask_message(self.family, "the 'masked' / 'predicts_masked' scope (and t)"))
        is_mask = self.input_ids == self.mask_id
        return is_mask & self.response_mask if self.prompt_length is not None else is_mask

    @cached_property
    def predicts_masked(self) -> Bool[torch.Tensor, "batch pos"]:
        if not self.logits_shift:
            return self.masked
        out = torch.zeros_like(self.masked)
        out[:, :-1] = self.masked[:, 1:]
        return out

    @property
    def block_span(self) -> tuple[int, int] | None:
        """[start, stop) canvas columns of the block a block-diffusion sampler is denoising (None otherwise)."""
        return self.info.block_span if self.info is not None else None

    @cached_property
    def t_block(self) -> float | None:
        """Fraction of the current block's positions (generation rows) still masked: block diffusion's `t`.
        None outside a block-diffusion sampler; columns of the block this forward does not feed are not counted."""
        span = self.block_span
        if span is None:
            return None
        lo, hi = span[0] - self.first_column, span[1] - self.first_column
        lo, hi = max(lo, 0), min(hi, self.input_ids.shape[1])
        if hi <= lo:
            return 0.0
        ids = self.input_ids[: self.main_rows, lo:hi]
        return float((ids == self.mask_id).float().mean())

    @cached_property
    def t(self) -> float | None:
        """Fraction of the generation rows' response positions still masked (None in a plain forward)."""
        if self.prompt_length is None:
            return None
        n_resp = int(self.response_mask[: self.main_rows].sum())
        return float(self.masked[: self.main_rows].sum()) / n_resp if n_resp > 0 else 0.0

    def scope_mask(self, scope: str, device: torch.device | None = None) -> Bool[torch.Tensor, "batch pos"]:
        """Boolean mask for a token scope: all / prompt / response / masked / predicts_masked / padding."""
        key = (scope, device)
        hit = self._on_device.get(key)
        if hit is not None:
            return hit
        if scope == "all":
            m = ~self.padding
        else:
            m = getattr(self, _SCOPE_FIELDS[check_scope(scope)])
        if device is not None and m.device != torch.device(device):
            m = m.to(device)
        self._on_device[key] = m
        return m
