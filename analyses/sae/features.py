"""Reading SAE features over the denoising process: contrasts, activations by step, top contexts.

- `contrast_features`: features whose mean activation (on the t = 1 canvas's response positions, where the model
  decides what it will write) differs most between two prompt sets, e.g. harmful vs harmless requests;
- `feature_trace`: one generation's feature activations at every step and position, and where each feature first
  fires (step, position);
- `top_contexts`: the strongest activations of a feature over generations, each with its prompt, the position,
  the token finally decoded there and the step at which it fired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float

from interventions.sae import SAE
from mdm_lens.hooked import HookedMDM


def _response_acts(
    model: HookedMDM, sae: SAE, site: str, prompts: Sequence, gen_length: int | None, chat: bool
) -> Float[torch.Tensor, "n_prompts d_sae"]:
    batch = model.masked_batch(list(prompts), gen_length, chat=chat)
    got: list[torch.Tensor] = []

    def grab(act, ctx):
        f = sae.encode(act[:, batch.prompt_length :])  # response positions, all masked at t = 1
        got.append(f.float().mean(1).cpu())

    with torch.no_grad(), model.hooks({site: grab}):
        model(batch.input_ids, attention_mask=batch.attention_mask, prompt_length=batch.prompt_length)
    return got[0]


RANKINGS = ("z", "mean", "frequency")


def contrast_features(
    model: HookedMDM,
    sae: SAE,
    site: str,
    prompts_a: Sequence,
    prompts_b: Sequence,
    *,
    top: int = 10,
    by: str = "z",
    gen_length: int | None = None,
    chat: bool = True,
) -> list[dict]:
    """Features ranked by how much more they fire on `prompts_a` than on `prompts_b` (largest first): `by="z"` the
    mean difference over the pooled standard deviation (default: a large always-on feature with a small relative
    shift does not win), "mean" the raw mean difference, "frequency" the difference in the fraction of prompts on
    which the feature is active. Each record has both means and both active fractions."""
    if by not in RANKINGS:
        raise ValueError(f"unknown ranking by={by!r}; use one of {RANKINGS}")
    sae.check(model, site)
    A = _response_acts(model, sae, site, prompts_a, gen_length, chat)
    B = _response_acts(model, sae, site, prompts_b, gen_length, chat)
    diff = A.mean(0) - B.mean(0)
    score = {
        "mean": diff,
        "z": diff / (torch.cat([A, B]).std(0) + 1e-6),
        "frequency": (A > 0).float().mean(0) - (B > 0).float().mean(0),
    }[by]
    order = score.argsort(descending=True)[:top]
    return [
        {
            "feature": int(i),
            "score": float(score[i]),
            "diff": float(diff[i]),
            "mean_a": float(A[:, i].mean()),
            "mean_b": float(B[:, i].mean()),
            "active_a": float((A[:, i] > 0).float().mean()),
            "active_b": float((B[:, i] > 0).float().mean()),
        }
        for i in order
    ]


@dataclass
class FeatureTrace:
    """`acts[step, row, pos, feature]` over the response positions of one `generate` call (only the features asked
    for), the final texts and token ids."""

    acts: torch.Tensor
    features: list[int]
    texts: list[str]
    tokens: torch.Tensor

    def first_fire(self, feature: int, row: int = 0) -> tuple[int, int] | None:
        """(step, response position) at which `feature` first fires in `row` (earliest step, then leftmost)."""
        a = self.acts[:, row, :, self.features.index(feature)]
        hits = (a > 0).nonzero()
        return None if hits.numel() == 0 else (int(hits[0, 0]), int(hits[0, 1]))

    def by_step(self, feature: int) -> Float[torch.Tensor, " steps"]:
        """Mean activation of `feature` over rows and response positions, per step."""
        return self.acts[..., self.features.index(feature)].mean((1, 2))


def feature_trace(
    model: HookedMDM,
    sae: SAE,
    site: str,
    prompts: Sequence,
    features: Sequence[int],
    *,
    seed: int = 0,
    chat: bool = True,
    **generate_kwargs,
) -> FeatureTrace:
    """Generate, reading the SAE's `features` at `site` on the response positions at every step."""
    sae.check(model, site)
    feats = [int(f) for f in features]
    for f in feats:
        sae._check_feature(f)
    idx = torch.tensor(feats)
    steps: list[torch.Tensor] = []

    def grab(act, ctx):
        plen = ctx.prompt_length
        steps.append(sae.encode(act[: ctx.main_rows, plen:])[..., idx].float().cpu())

    with torch.no_grad(), model.hooks({site: grab}):
        out = model.generate(list(prompts), seed=seed, chat=chat, **generate_kwargs)
    return FeatureTrace(torch.stack(steps), feats, list(out.texts), out.tokens)


def top_contexts(
    model: HookedMDM,
    sae: SAE,
    site: str,
    prompts: Sequence,
    feature: int,
    *,
    n: int = 10,
    seed: int = 0,
    chat: bool = True,
    **generate_kwargs,
) -> list[dict]:
    """The `n` strongest (prompt, position) activations of `feature` across the steps of generations of `prompts`;
    each record has the step at which that activation happened and the first step the feature fired there."""
    tr = feature_trace(model, sae, site, prompts, [feature], seed=seed, chat=chat, **generate_kwargs)
    a = tr.acts[..., 0]  # [steps, rows, pos]
    best, best_step = a.max(0)  # per (row, pos)
    fired = (a > 0).float()
    first = torch.where(fired.any(0), fired.argmax(0), torch.full_like(best_step, -1))
    flat = best.flatten().argsort(descending=True)[:n]
    recs = []
    for j in flat.tolist():
        row, pos = divmod(j, a.shape[2])
        if float(best[row, pos]) <= 0:
            break
        tok = None
        if tr.tokens is not None and model.tokenizer is not None:
            tok = model.tokenizer.decode([int(tr.tokens[row, pos])])
        recs.append(
            {
                "prompt": prompts[row] if isinstance(prompts[row], str) else row,
                "position": pos,
                "token": tok,
                "activation": float(best[row, pos]),
                "step": int(best_step[row, pos]),
                "first_step": int(first[row, pos]),
                "text": tr.texts[row],
            }
        )
    return recs


__all__ = ["FeatureTrace", "contrast_features", "feature_trace", "top_contexts"]
