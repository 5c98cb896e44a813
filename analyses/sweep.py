"""Layer sensitivity sweep (Shnaidman et al.): layers × hook points × token scopes × λ, each cell steered
and scored by a user metric, plus the unsteered baseline. A failing cell is recorded, not fatal; a sweep
whose every cell fails raises (a table of errors is not a result).

Hook points are site roles (`mdm_lens.sites.LAYER_ROLES`: resid_post, mlp_out, ...), scopes the core's
token scopes (`mdm_lens.context.SCOPES`; "all" = unrestricted)."""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tqdm.auto import tqdm

from mdm_lens.context import check_scope
from mdm_lens.sites import check_roles, get_act_name

from .plotting import plt


def sweep_sites(model, hook_points: Sequence[str], layers: Sequence[int] | None = None) -> list[str]:
    """The sites a sweep over `hook_points` (site roles) × `layers` (all by default) steers, for collection."""
    return model.site_names(check_roles(hook_points, "hook points"), layers)


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
                scopes: Sequence[str] = ("all",), lambdas: Sequence[float] = (1.0,), seed: int = 0,
                progress: bool = True, **sampler_kwargs) -> SweepResult:
    """`plan_factory(sites) -> Plan` fits a plan for a list of sites (collect once, outside, and close over
    the activations); `metric(texts) -> float` scores one cell's generations."""
    if not prompts:
        raise ValueError("empty prompt set: the sweep needs prompts to generate from")
    check_roles(hook_points, "hook points")
    for scope in scopes:
        check_scope(scope)
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    res = SweepResult()
    texts = model.generate(list(prompts), seed=seed, **sampler_kwargs).texts
    res.baseline = float(metric(texts))
    cells = [(l, p, s, lam) for l in layers for p in hook_points for s in scopes for lam in lambdas]
    for layer, point, scope, lam in tqdm(cells, desc="sweep", disable=not progress):
        site = get_act_name(point, layer)
        rec = {"layer": layer, "hook_point": point, "site": site, "scope": scope, "lambda": lam, "score": None}
        try:
            plan = plan_factory([site]).strength(lam)
            if scope != "all":
                plan = plan.scope(scope)
            out = model.generate(list(prompts), plan=plan, seed=seed, **sampler_kwargs)
            rec["score"] = float(metric(out.texts))
            rec["delta"] = rec["score"] - res.baseline
        except Exception as err:       # one failing cell must not lose the table
            rec["error"] = f"{type(err).__name__}: {err}"
            rec["traceback"] = traceback.format_exc(limit=3)
        res.records.append(rec)
    failed = [r for r in res.records if "error" in r]
    if res.records and len(failed) == len(res.records):
        raise RuntimeError(f"every one of the {len(failed)} sweep cells failed; the first: {failed[0]['error']}\n"
                           f"{failed[0]['traceback']}")
    return res
