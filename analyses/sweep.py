"""Layer sensitivity sweep (Shnaidman et al.): layers × hook points × token scopes × λ, each cell steered
and scored by a user metric, plus the unsteered baseline; a failing metric is recorded, not fatal."""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tqdm.auto import tqdm

from .plotting import plt

HOOK_POINTS = {"resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
               "attn_out": "attn.hook_out", "mlp_pre": "mlp.hook_pre", "mlp_out": "mlp.hook_out"}
SCOPES = {"both": "all", "prompt": "prompt", "response": "response"}


@dataclass
class SweepResult:
    records: list[dict] = field(default_factory=list)
    baseline: float | None = None

    def plot(self, path: str) -> str:
        ok = [r for r in self.records if r.get("score") is not None]
        groups = sorted({(r["scope"], r["lambda"]) for r in ok})
        layers = sorted({r["layer"] for r in ok})
        points = list(dict.fromkeys(r["hook_point"] for r in ok))
        fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(4 * max(1, len(groups)), 3.5), squeeze=False)
        for ax, (scope, lam) in zip(axes[0], groups):
            grid = [[next((r["score"] for r in ok if r["layer"] == l and r["hook_point"] == p and r["scope"] == scope
                           and r["lambda"] == lam), float("nan")) for l in layers] for p in points]
            im = ax.imshow(grid, aspect="auto", cmap="magma")
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels(layers)
            ax.set_yticks(range(len(points)))
            ax.set_yticklabels(points)
            ax.set_xlabel("layer")
            ax.set_title(f"scope={scope} λ={lam} (baseline {self.baseline:.2f})" if self.baseline is not None
                         else f"scope={scope} λ={lam}", fontsize=8)
            fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def layer_sweep(model, plan_factory: Callable, prompts: Sequence[str], metric: Callable[[list[str]], float], *,
                layers: Sequence[int] | None = None, hook_points: Sequence[str] = ("resid_post", "mlp_out"),
                scopes: Sequence[str] = ("both",), lambdas: Sequence[float] = (1.0,), seed: int = 0,
                progress: bool = True, **sampler_kwargs) -> SweepResult:
    """`plan_factory(sites) -> Plan` fits a plan for a list of sites (collect once, outside, and close over
    the activations); `metric(texts) -> float` scores one cell's generations."""
    if not prompts:
        raise ValueError("empty prompt set: the sweep needs prompts to generate from")
    bad = sorted(set(hook_points) - set(HOOK_POINTS))
    if bad:
        raise ValueError(f"unknown hook points {bad}; use {sorted(HOOK_POINTS)}")
    bad = sorted(set(scopes) - set(SCOPES))
    if bad:
        raise ValueError(f"unknown scopes {bad}; use {sorted(SCOPES)}")
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    res = SweepResult()
    texts = model.generate(list(prompts), seed=seed, **sampler_kwargs).texts
    res.baseline = float(metric(texts))
    cells = [(l, p, s, lam) for l in layers for p in hook_points for s in scopes for lam in lambdas]
    for layer, point, scope, lam in tqdm(cells, desc="sweep", disable=not progress):
        site = f"blocks.{layer}.{HOOK_POINTS[point]}"
        rec = {"layer": layer, "hook_point": point, "site": site, "scope": scope, "lambda": lam, "score": None}
        try:
            plan = plan_factory([site]).strength(lam)
            if scope != "both":
                plan = plan.scope(SCOPES[scope])
            out = model.generate(list(prompts), plan=plan, seed=seed, **sampler_kwargs)
            rec["score"] = float(metric(out.texts))
            rec["delta"] = rec["score"] - res.baseline
        except Exception as err:       # one failing cell must not lose the table
            rec["error"] = f"{type(err).__name__}: {err}"
            rec["traceback"] = traceback.format_exc(limit=3)
        res.records.append(rec)
    return res
