"""An activation store that streams one site's activations from the denoising process, for SAE training.

Two sources, as DLM-Scope trains its SAEs:
- `pairs` (prompt, response): the response, EOS-padded to `gen_length` as a finished generation holds it, is
  masked at every ratio of `mask_ratios` (one row per ratio) and the forward pass reads the site: the t-masked
  canvases the model was trained on;
- `prompts` (with `generate=True`): `model.generate` runs, read at the steps in `steps` (all when None).
`variant` picks positions: "mask" (response positions still masked: what the model is predicting), "unmask"
(response positions already decoded / given), "response" (both). Activations go into a bounded shuffling buffer
(`buffer_size` rows, float32 on CPU); batches are drawn at random from it and it is refilled when half empty, so
memory never grows with the corpus. Everything random comes from one seeded generator whose state, with the
buffer and the cursor into the source, is the store's `state_dict()`: a run resumed from it is the same run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from jaxtyping import Float

from mdm_lens.hooked import HookedMDM

VARIANTS = ("mask", "unmask", "response")
MASK_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _select(ctx, variant: str) -> torch.Tensor:
    resp = ctx.response_mask & ~ctx.padding
    if variant == "mask":
        return ctx.masked & resp
    if variant == "unmask":
        return resp & ~ctx.masked
    return resp


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown store variant {variant!r}; use one of {VARIANTS} ('mask': still-masked response "
            "positions, 'unmask': decoded ones, 'response': both)"
        )
    return variant


def response_canvas(model: HookedMDM, response_ids: torch.Tensor, gen_length: int) -> torch.Tensor:
    """The response as a finished generation holds it: tokens (cut to fit), EOT where the tokenizer has one, then
    EOS to `gen_length` (LLaDA's SFT layout, which is also what the sampler decodes into)."""
    from mdm_lens.generation import special_ids

    sp = special_ids(model)
    tail = [sp["eot"]] if sp["eot"] is not None else []
    r = response_ids.tolist()[: gen_length - len(tail)] + tail
    return torch.tensor(r + [sp["eos"]] * (gen_length - len(r)), dtype=torch.long)


def mask_at(canvas: torch.Tensor, plen: int, ratios: torch.Tensor, mask_id: int, gen: torch.Generator) -> torch.Tensor:
    """Row i gets `round(ratios[i] · gen_length)` (at least one) response positions masked at random: LLaDA's
    training corruption with the ratio fixed."""
    out = canvas.clone()
    n = canvas.shape[1] - plen
    for i, r in enumerate(ratios.tolist()):
        m = max(1, min(n, round(r * n)))
        out[i, plen + torch.randperm(n, generator=gen)[:m]] = mask_id
    return out


class ActivationStore:
    """`for batch in store.batches(n):` yields `[batch_size, d]` float32 activations of `site`.

    `pairs`: (prompt, response) texts or id tensors, for t-masked canvases; `prompts`: texts for
    `model.generate` runs (`generate_kwargs` pass through, e.g. steps / gen_length). Exactly one is given."""

    def __init__(
        self,
        model: HookedMDM,
        site: str,
        *,
        pairs: Sequence | None = None,
        prompts: Sequence[str] | None = None,
        variant: str = "mask",
        mask_ratios: Sequence[float] = MASK_RATIOS,
        steps: Sequence[int] | None = None,
        batch_size: int = 256,
        buffer_size: int = 16384,
        gen_batch: int = 4,
        chat: bool = True,
        gen_length: int | None = None,
        seed: int = 0,
        generate_kwargs: dict | None = None,
    ):
        if (pairs is None) == (prompts is None):
            raise ValueError(
                "give exactly one source: pairs=[(prompt, response), ...] for t-masked canvases, or "
                "prompts=[...] for model.generate runs"
            )
        self.model, self.site, self.variant = model, site, check_variant(variant)
        self.d = model.site(site).width
        if not all(0.0 < float(r) <= 1.0 for r in mask_ratios) or not mask_ratios:
            raise ValueError(f"mask_ratios must be non-empty values in (0, 1], got {list(mask_ratios)}")
        if batch_size <= 0 or buffer_size < 2 * batch_size:
            raise ValueError(
                f"need batch_size > 0 and buffer_size >= 2 * batch_size, got batch_size={batch_size}, "
                f"buffer_size={buffer_size}"
            )
        self.pairs = None if pairs is None else list(pairs)
        self.prompts = None if prompts is None else list(prompts)
        source = self.pairs if self.pairs is not None else self.prompts
        if not source:
            raise ValueError("the store's source is empty")
        self.mask_ratios = tuple(float(r) for r in mask_ratios)
        self.steps = None if steps is None else {int(s) for s in steps}
        self.batch_size, self.buffer_size, self.gen_batch, self.chat = batch_size, buffer_size, gen_batch, chat
        self.generate_kwargs = dict(generate_kwargs or {})
        self.gen_length = int(gen_length or model.default_gen_length)
        self.gen = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.cursor = 0  # next source item
        self.epoch = 0
        self.buffer = torch.empty(0, self.d)
        self.n_read = 0  # activations read from the model so far
        self._encoded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ reading the model
    def _pair_ids(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i not in self._encoded:
            from mdm_lens.likelihood import encode_pair

            p, r = self.pairs[i]
            p_ids, r_ids = encode_pair(self.model, p, r, chat=self.chat)
            self._encoded[i] = (p_ids, response_canvas(self.model, r_ids, self.gen_length))
        return self._encoded[i]

    def _read_pairs(self) -> torch.Tensor:
        """`gen_batch` pairs, each at every mask ratio: prompts left-padded as `generate` pads them."""
        from mdm_lens.generation import special_ids
        from mdm_lens.prompts import left_pad

        items = [self._pair_ids(self._next()) for _ in range(self.gen_batch)]
        ids, attn = left_pad([p.tolist() for p, _ in items], special_ids(self.model)["pad"])
        plen = ids.shape[1]
        canvas = torch.cat([ids, torch.stack([r for _, r in items])], 1)
        reps = len(self.mask_ratios)
        canvas = canvas.repeat_interleave(reps, 0)
        ratios = torch.tensor(self.mask_ratios).repeat(len(items))
        noisy = mask_at(canvas, plen, ratios, self.model.mask_id, self.gen).to(self.model.input_device)
        if attn is not None:
            attn = torch.cat([attn, torch.ones(len(items), self.gen_length, dtype=attn.dtype)], 1)
            attn = attn.repeat_interleave(reps, 0).to(self.model.input_device)
        got: list[torch.Tensor] = []

        def grab(act, ctx):
            got.append(act[_select(ctx, self.variant)].detach().float().cpu())

        with torch.no_grad(), self.model.hooks({self.site: grab}):
            self.model(noisy, attention_mask=attn, prompt_length=plen)
        return torch.cat(got)

    def _read_generate(self) -> torch.Tensor:
        batch = [self.prompts[self._next()] for _ in range(min(self.gen_batch, len(self.prompts)))]
        got: list[torch.Tensor] = []

        def grab(act, ctx):
            if self.steps is None or ctx.step in self.steps:
                sel = _select(ctx, self.variant)[: ctx.main_rows]
                got.append(act[: ctx.main_rows][sel].detach().float().cpu())

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.gen))
        with torch.no_grad(), self.model.hooks({self.site: grab}):
            self.model.generate(batch, chat=self.chat, seed=seed, **self.generate_kwargs)
        return torch.cat(got) if got else torch.empty(0, self.d)

    def _next(self) -> int:
        source = self.pairs if self.pairs is not None else self.prompts
        if self.cursor >= len(source):
            self.cursor, self.epoch = 0, self.epoch + 1
        self.cursor += 1
        return self.cursor - 1

    def _refill(self) -> None:
        parts, have = [self.buffer], self.buffer.shape[0]
        while have < self.buffer_size:
            a = self._read_pairs() if self.pairs is not None else self._read_generate()
            bad = int((~torch.isfinite(a)).sum())
            if bad:
                raise FloatingPointError(
                    f"{bad} NaN/inf activations at site {self.site!r}; the model's forward is "
                    "not finite here (check its dtype / weights) and an SAE cannot learn from it"
                )
            parts.append(a)
            have += a.shape[0]
            self.n_read += a.shape[0]
        buf = torch.cat(parts)[: self.buffer_size]
        self.buffer = buf[torch.randperm(buf.shape[0], generator=self.gen)]

    def next_batch(self) -> Float[torch.Tensor, "batch d"]:
        """A shuffled batch; the buffer is topped up (and reshuffled) whenever it falls below half full."""
        if self.buffer.shape[0] < self.buffer_size // 2:
            self._refill()
        out, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        return out

    def batches(self, n: int) -> Iterator[torch.Tensor]:
        for _ in range(n):
            yield self.next_batch()

    def sample(self, n: int) -> Float[torch.Tensor, "n d"]:
        """`n` activations (whole batches), e.g. to initialise `b_dec` or to evaluate."""
        out = []
        while sum(x.shape[0] for x in out) < n:
            out.append(self.next_batch())
        return torch.cat(out)[:n]

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "buffer": self.buffer.clone(),
            "rng": self.gen.get_state(),
            "counters": torch.tensor([self.cursor, self.epoch, self.n_read], dtype=torch.long),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["buffer"].shape[1:] != (self.d,):
            raise ValueError(
                f"store state of width {tuple(state['buffer'].shape[1:])} does not fit site {self.site!r} "
                f"of width {self.d}"
            )
        self.buffer = state["buffer"].clone()
        self.gen.set_state(state["rng"])
        self.cursor, self.epoch, self.n_read = (int(v) for v in state["counters"])

    def describe(self) -> dict:
        """What the store reads, for the SAE's metadata."""
        return {
            "site": self.site,
            "variant": self.variant,
            "source": "t-masked pairs" if self.pairs is not None else "model.generate",
            "mask_ratios": list(self.mask_ratios) if self.pairs is not None else None,
            "steps": sorted(self.steps) if self.steps is not None else ("all" if self.prompts else None),
            "seed": self.seed,
        }


__all__ = ["MASK_RATIOS", "VARIANTS", "ActivationStore", "mask_at", "response_canvas"]
