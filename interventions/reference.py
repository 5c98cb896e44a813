"""Reference alignment (ILRR, arXiv 2601.21647): pull the generation's activations toward those of a
reference text, re-masked to the generation's level at every step.

Our reading: at each steered step one extra row runs in the same batch (`model.augment_batch`): the first
generation row's prompt followed by the reference response, masked at exactly the positions still masked
in that row (the same level, position-aligned). At each chosen site, for response positions i,
    h_i ← h_i + s · w_i · (φ(H_ref) − φ(H)),
φ the mean over response positions ('mean', one shared vector) or the position itself ('aligned').
w_i is the spatial profile: 1 over the reference's length, then 'flat' (1), 'linear' (ramping to 0 at
the end of the output) or 'none' (0) beyond it, for references shorter than the output.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Sequence

import torch


class ReferenceAlignment:
    def __init__(
        self,
        reference_ids: Sequence[int] | torch.Tensor,
        sites: Sequence[str],
        s: float = 1.0,
        pooling: str = "mean",
        profile: str = "linear",
        pad_id: int | None = None,
    ):
        if pooling not in ("mean", "aligned"):
            raise ValueError(f"unknown pooling {pooling!r}; use 'mean' or 'aligned'")
        if profile not in ("flat", "linear", "none"):
            raise ValueError(f"unknown profile {profile!r}; use 'flat', 'linear' or 'none'")
        self.ref = torch.as_tensor(reference_ids, dtype=torch.long).flatten()
        if self.ref.numel() == 0:
            raise ValueError("empty reference: give the reference response's token ids")
        self.sites, self.s, self.pooling, self.profile, self.pad_id = list(sites), float(s), pooling, profile, pad_id
        self._model = None

    def strength(self, lam: float) -> "ReferenceAlignment":
        return ReferenceAlignment(self.ref, self.sites, self.s * lam, self.pooling, self.profile, self.pad_id)

    def _weights(self, gen: int, device, dtype) -> torch.Tensor:
        w = torch.ones(gen, device=device, dtype=dtype)
        L = min(self.ref.numel(), gen)
        if L < gen:
            if self.profile == "none":
                w[L:] = 0
            elif self.profile == "linear":
                w[L:] = torch.linspace(1, 0, gen - L + 1, device=device, dtype=dtype)[1:]
        return w

    def _augment(self, ids, mask, pos, info):
        if info is None or self.s == 0:
            return None
        plen = info.prompt_length
        gen = ids.shape[1] - plen
        resp = torch.full((gen,), self.pad_id if self.pad_id is not None else int(self.ref[-1]), dtype=torch.long)
        L = min(self.ref.numel(), gen)
        resp[:L] = self.ref[:L]
        row = torch.cat([ids[0, :plen].cpu(), resp])
        still = ids[0].cpu() == self._model.mask_id
        row[still] = self._model.mask_id
        return row[None].to(ids.device), (mask[:1] if mask is not None else None)

    def _hook(self, act: torch.Tensor, ctx):
        if act.shape[0] == ctx.main_rows or ctx.prompt_length is None:
            return None
        plen, B = ctx.prompt_length, ctx.main_rows
        h, ref = act[:B, plen:], act[B : B + 1, plen:]
        if self.pooling == "mean":
            delta = ref.mean(1, keepdim=True) - h.mean(1, keepdim=True)
        else:
            delta = ref - h
        w = self._weights(h.shape[1], act.device, act.dtype)[None, :, None]
        out = act.clone()
        out[:B, plen:] = h + self.s * w * delta
        return out

    @property
    def d(self):
        return None

    @contextmanager
    def attach(self, model):
        from mdm_lens.no_mask import require_mask_token

        require_mask_token(model, "ReferenceAlignment (it copies the canvas's mask positions)")
        for s in self.sites:
            model.site(s)
        self._model = model
        with ExitStack() as stack:
            if self.s != 0:
                stack.enter_context(model.augment_batch(self._augment))
                stack.enter_context(model.hooks({s: self._hook for s in self.sites}))
            yield model
        self._model = None
