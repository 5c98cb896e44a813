"""Head and neuron ablation as plan interventions: zero, mean over a reference set, or resample from it.

A head is ablated at `blocks.{l}.attn.hook_z` (`[batch, pos, head, d_head]`, the head's output before W_O), a neuron
at `blocks.{l}.mlp.hook_post` (`[batch, pos, d_mlp]`, the input of the down projection), as TransformerLens users
do. Each helper returns a `Plan`, so ablations add to steering plans (`plan + head_ablation(...)`), and take
`steps=` (a [start, stop) step window, `Plan.window`) and `scope=` (the project's scope words) to act at chosen
denoising steps and positions only.

* `zero`: the unit's output is 0;
* `mean`: its mean over the reference activations (every reference row and position: one vector per unit);
* `resample`: the reference activation of a randomly drawn reference row (seeded), position for position; the
  reference canvases must have the ablated run's length (`model.masked_batch(prompts, gen_length)` gives t = 1
  canvases of a chosen length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from mdm_lens.context import check_scope
from mdm_lens.sites import get_act_name

from .plan import Plan

MODES = ("zero", "mean", "resample")


@dataclass(frozen=True)
class Ablation:
    """Replace units `index` along the unit axis (-2 for heads, -1 for neurons) by `value`, at strength `lam`
    (act + lam * (value - act)). `value`: None (zero), `[units, (d_head)]` (mean), or `[n_ref, pos, units, (d_head)]`
    (resample: row r of a batch takes reference row `draw[r]`)."""

    index: tuple[int, ...]
    unit_axis: int
    mode: str = "zero"
    value: torch.Tensor | None = None
    scope: str = "all"
    seed: int = 0
    lam: float = 1.0

    @property
    def d(self) -> None:  # the site's width is not constrained (heads live on a 4-d site)
        return None

    def strength(self, lam: float) -> Ablation:
        return replace(self, lam=float(lam))

    def _target(self, act: torch.Tensor) -> torch.Tensor:
        idx = list(self.index)
        sel = act[..., idx, :] if self.unit_axis == -2 else act[..., idx]
        if self.mode == "zero":
            return torch.zeros_like(sel)
        v = self.value.to(act.device, act.dtype)
        if self.mode == "mean":
            return v.expand_as(sel)
        if v.shape[1] != act.shape[1]:
            raise ValueError(
                f"resample ablation: the reference canvases have {v.shape[1]} positions, this forward "
                f"{act.shape[1]}; build the reference with the same prompt + gen_length"
            )
        g = torch.Generator().manual_seed(self.seed)
        draw = torch.randint(0, v.shape[0], (act.shape[0],), generator=g)
        return v[draw.to(v.device)]

    def __call__(self, act: torch.Tensor, ctx=None) -> torch.Tensor:
        idx = list(self.index)
        out = act.clone()
        cur = act[..., idx, :] if self.unit_axis == -2 else act[..., idx]
        new = torch.lerp(cur, self._target(act), self.lam)  # exact target at lam = 1
        if ctx is not None and self.scope != "all":
            keep = ctx.scope_mask(self.scope, act.device)[: act.shape[0]]
            keep = keep.view(*keep.shape, *([1] * (new.dim() - 2)))
            new = torch.where(keep, new, cur)
        if self.unit_axis == -2:
            out[..., idx, :] = new
        else:
            out[..., idx] = new
        return out


def _reference(model, site: str, reference, unit_axis: int, index: list[int], mode: str):
    if mode == "zero":
        return None
    if reference is None:
        raise ValueError(
            f"mode={mode!r} needs reference= (a [batch, pos] id tensor, e.g. model.masked_batch(prompts, "
            "gen_length).input_ids, whose activations give the mean / the resampled values)"
        )
    ids = reference[0] if isinstance(reference, tuple) else getattr(reference, "input_ids", reference)
    mask = getattr(reference, "attention_mask", None)
    _, cache = model.run_with_cache(ids, names_filter=[site], attention_mask=mask)
    a = cache[site].float()
    a = a[..., index, :] if unit_axis == -2 else a[..., index]
    return a.mean(dim=(0, 1)) if mode == "mean" else a


def _check(mode: str, scope: str, units: Sequence[int], n: int, what: str) -> list[int]:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; use one of {MODES}")
    check_scope(scope)
    units = [int(u) for u in units]
    bad = [u for u in units if not 0 <= u < n]
    if bad or not units:
        raise ValueError(f"{what} {bad or units} out of range: this layer has {what} 0..{n - 1}")
    return units


def head_ablation(
    model,
    layer: int,
    heads: Sequence[int],
    mode: str = "zero",
    *,
    reference=None,
    steps: Sequence[int] | None = None,
    scope: str = "all",
    seed: int = 0,
) -> Plan:
    """A plan ablating `heads` of `layer` (at `attn.hook_z`); `steps`: a [start, stop) window of denoising steps."""
    if not 0 <= int(layer) < model.n_layers:
        raise ValueError(f"layer={layer} out of range: the model has layers 0..{model.n_layers - 1}")
    heads = _check(mode, scope, heads, model.cfg.n_heads, "heads")
    site = get_act_name("z", int(layer))
    value = _reference(model, site, reference, -2, heads, mode)
    plan = Plan({site: Ablation(tuple(heads), -2, mode, value, scope, seed)})
    return plan.window(steps=steps) if steps is not None else plan


def neuron_ablation(
    model,
    layer: int,
    neurons: Sequence[int],
    mode: str = "zero",
    *,
    reference=None,
    steps: Sequence[int] | None = None,
    scope: str = "all",
    seed: int = 0,
) -> Plan:
    """A plan ablating MLP `neurons` of `layer` (at `mlp.hook_post`); `steps` as in `head_ablation`."""
    if not 0 <= int(layer) < model.n_layers:
        raise ValueError(f"layer={layer} out of range: the model has layers 0..{model.n_layers - 1}")
    site = get_act_name("mlp_post", int(layer))
    neurons = _check(mode, scope, neurons, model.site(site).width, "neurons")
    value = _reference(model, site, reference, -1, neurons, mode)
    plan = Plan({site: Ablation(tuple(neurons), -1, mode, value, scope, seed)})
    return plan.window(steps=steps) if steps is not None else plan
