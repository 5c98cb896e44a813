"""When does a behaviour settle? Single-step interventions, the lens's first correct step, adaptive windows.

A masked diffusion model commits to an answer over its denoising steps ("Steering Without Breaking", arXiv
2605.10971: topic in the first 2 % of denoising, sentiment over ~20 %). Three measurements answer *when*:

* `single_step_effects`: for each layer's intervention (a steering plan, a patch from a clean run, an ablation: any plan
  or `{site: fn}` dict) applied at ONE step alone, the change of a behaviour score of the final texts
  (refusal, sentiment, a constraint check) against the unsteered run -> `effect[layer, step]`;
* `lens_settle`: the step at which each layer's logit lens first ranks the final answer's tokens top-1
  (`analyses.logit_lens`, restricted to the positions that carry the answer, e.g. its first tokens);
* `adaptive_window`: the step window `[start, stop)` where the single-step effect is at least `frac` of its
  peak; `plan.window(steps=window)` then steers only while the attribute forms.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from mdm_lens.safefile import save_figure_atomic

Score = Callable[[Sequence[str]], Sequence[float]]


@dataclass
class SettleResult:
    """`effect[layer, step]` = mean score with the intervention at that step alone minus the unsteered mean score;
    `records`: one per (layer, step) with the mean score, the effect and n; `baseline`: the unsteered mean."""

    effect: torch.Tensor
    layers: list
    steps: list[int]
    baseline: float
    records: list[dict] = field(default_factory=list)
    lens: dict | None = None

    def plot(self, path: str | os.PathLike, title: str = "effect of intervening at one step alone") -> str:
        import matplotlib.pyplot as plt

        from . import plotting  # noqa: F401  (Agg backend)

        n = 2 if self.lens else 1
        fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.2), squeeze=False)
        ax = axes[0][0]
        vmax = float(self.effect.abs().max()) or 1.0
        im = ax.imshow(self.effect.numpy(), aspect="auto", cmap="RdBu", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(len(self.steps)), [str(s) for s in self.steps], fontsize=6)
        ax.set_yticks(range(len(self.layers)), [str(l) for l in self.layers])
        ax.set_xlabel("step (intervention at this step only)")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, shrink=0.8, label="effect on final score")
        ax.set_title(title, fontsize=9)
        if self.lens:
            ax2 = axes[0][1]
            for layer, rates in self.lens["top1_rate"].items():
                ax2.plot(self.lens["steps"], rates, marker=".", label=f"layer {layer}")
            ax2.set_xlabel("step")
            ax2.set_ylabel("lens top-1 = final answer token")
            ax2.set_ylim(-0.02, 1.02)
            ax2.legend(fontsize=7)
            ax2.set_title("logit lens on the answer's positions", fontsize=9)
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=120)
        plt.close(fig)
        return str(path)


def _windowed(plan, step: int):
    """`plan` active at `step` only: a Plan's own window, or a hook dict wrapped on `ctx.step`."""
    if hasattr(plan, "window"):
        return plan.window(steps=[step, step + 1])

    def only(fn):
        def call(act, ctx):
            return fn(act, ctx) if ctx.step == step else None

        return call

    return {site: [only(f) for f in (fns if isinstance(fns, (list, tuple)) else [fns])] for site, fns in plan.items()}


def _mean(xs) -> float:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs)


def single_step_effects(
    model,
    prompts,
    plans: Mapping,
    score: Score,
    *,
    at_steps: Sequence[int] | None = None,
    seed: int = 0,
    progress: bool = True,
    **sampler_kwargs,
) -> SettleResult:
    """`plans`: {layer (or any label): plan or {site: fn}}; each is applied at one step at a time (`at_steps`,
    default every step of the sampler) while `prompts` generate; `score(texts)` -> one number per text.
    `sampler_kwargs` are the sampler's own settings (its `steps` is the step count, hence `at_steps` here).
    Not to be confused with `analyses.effects.step_effects`, which applies one plan at every step and measures
    its effect per step."""
    n_steps = int(model.sampler_settings(**sampler_kwargs)["steps"])
    steps = list(range(n_steps)) if at_steps is None else [int(s) for s in at_steps]
    bad = [s for s in steps if not 0 <= s < n_steps]
    if bad:
        raise ValueError(f"steps {bad} out of range: the sampler runs steps 0..{n_steps - 1}")
    base = _mean(score(model.generate(prompts, seed=seed, **sampler_kwargs).texts))
    effect = torch.zeros(len(plans), len(steps))
    records = []
    bar = tqdm(total=len(plans) * len(steps), desc="single-step interventions", disable=not progress, leave=False)
    for i, (label, plan) in enumerate(plans.items()):
        for j, s in enumerate(steps):
            with model.steer(_windowed(plan, s)):
                texts = model.generate(prompts, seed=seed, **sampler_kwargs).texts
            m = _mean(score(texts))
            effect[i, j] = m - base
            records.append({"layer": label, "step": s, "score": m, "effect": m - base, "n": len(texts)})
            bar.update(1)
    bar.close()
    return SettleResult(effect, list(plans), steps, base, records)


def adaptive_window(
    effect: Sequence[float] | torch.Tensor, steps: Sequence[int], frac: float = 0.5, sign: int = 1
) -> tuple[int, int]:
    """`[start, stop)` spanning the steps whose single-step effect (times `sign`: -1 when the intervention lowers
    the score) reaches `frac` of the peak: the window a plan needs to move the attribute while it forms."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac={frac}: a share of the peak effect, in (0, 1]")
    e = torch.as_tensor(effect, dtype=torch.float64).flatten() * sign
    if len(e) != len(steps):
        raise ValueError(f"{len(e)} effects for {len(steps)} steps")
    peak = float(e.max())
    if peak <= 0:
        raise ValueError("no step has an effect in the asked direction: there is no window to steer in (check sign=)")
    hit = [s for s, v in zip(steps, e.tolist()) if v >= frac * peak]
    return min(hit), max(hit) + 1


def lens_settle(
    model,
    prompts,
    *,
    positions: Sequence[int] = (0,),
    layers: Sequence[int] | None = None,
    threshold: float = 0.5,
    seed: int = 0,
    **sampler_kwargs,
) -> dict:
    """Per layer, the top-1 rate of the logit lens on the answer's `positions` (response-relative) at each step
    while they are still masked, and the first step at which it reaches `threshold` (None: never)."""
    from .logit_lens import logit_lens

    res = logit_lens(model, prompts, layers=layers, seed=seed, **sampler_kwargs)
    keep = {int(p) for p in positions}
    rates: dict = {}
    for layer in res.layers:
        row = []
        for s in res.steps:
            hits = [
                r["is_top1"] for r in res.records if r["layer"] == layer and r["step"] == s and r["position"] in keep
            ]
            row.append(sum(hits) / len(hits) if hits else float("nan"))
        rates[layer] = row
    first = {
        layer: next((s for s, v in zip(res.steps, rates[layer]) if not math.isnan(v) and v >= threshold), None)
        for layer in res.layers
    }
    return {
        "steps": list(res.steps),
        "top1_rate": rates,
        "first_step": first,
        "threshold": threshold,
        "positions": sorted(keep),
    }
