"""Layer sensitivity sweep (Shnaidman et al.): layers × roles × token scopes × λ, each cell steered
and scored by a user metric, plus the unsteered baseline. A failing cell is recorded, not fatal; a sweep
whose every cell fails raises (a table of errors is not a result).

Roles come from the site table (`mdm_lens.sites.LAYER_ROLES`: resid_post, mlp_out, ...), scopes the core's
token scopes (`mdm_lens.context.SCOPES`; "all" = unrestricted)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from tqdm.auto import tqdm

from mdm_lens.context import check_scope
from mdm_lens.safefile import save_figure_atomic
from mdm_lens.sites import check_roles, get_act_name

from .plotting import plt

if TYPE_CHECKING:
    from interventions import Plan
    from mdm_lens import HookedMDM


def sweep_sites(model, roles: Sequence[str], layers: Sequence[int] | None = None) -> list[str]:
    """The sites a sweep over `roles` (site roles) × `layers` (all by default) steers, for collection."""
    return model.site_names(check_roles(roles, "roles"), layers)


def resolve_metric(spec: str, kwargs: dict | None = None):
    """`(name, metric(texts) -> float)` from a metric spec: an IFEval instruction id (share of texts that pass
    it, with `kwargs` for the ids that take some), `refusal` (refusal rate), `sentiment` (VADER positive rate)
    or `module:function` (any callable taking the list of texts and returning a float)."""
    from . import ifeval

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"metric {spec!r}: give an IFEval instruction id, 'refusal', 'sentiment' or 'module:function'")
    if spec == "refusal":
        from .refusal import refusal_rate

        return "refusal rate", refusal_rate
    if spec == "sentiment":
        from .sentiment import vader_positive_rate

        return "positive-sentiment rate (VADER)", vader_positive_rate
    if spec in ifeval.INSTRUCTION_IDS:
        check = ifeval.get_spec(spec).bind(kwargs or {})  # refuses missing / unknown kwargs, naming them
        return f"{spec} pass rate", lambda texts: sum(check(t) for t in texts) / len(texts)
    if ":" in spec and spec.split(":", 1)[0] not in {i.split(":")[0] for i in ifeval.INSTRUCTION_IDS}:
        import importlib

        mod, fn = spec.split(":", 1)
        try:
            func = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"metric {spec!r}: cannot load {fn!r} from module {mod!r} ({err})") from err
        if not callable(func):
            raise ValueError(f"metric {spec!r}: {fn!r} in {mod!r} is not callable")
        return spec, func
    raise ValueError(
        f"metric {spec!r}: not an IFEval instruction id (e.g. change_case:english_lowercase), "
        "'refusal', 'sentiment' or an importable 'module:function'"
    )


@dataclass
class SweepResult:
    records: list[dict] = field(default_factory=list)
    baseline: float | None = None
    # every text the sweep scored: {"cell": "baseline" or the site, scope, λ, "prompt", "text"} (a zero can be read)
    generations: list[dict] = field(default_factory=list)

    def plot(self, path: str, metric: str = "score", title: str | None = None) -> str:
        """One heatmap per (scope, λ) in a grid (rows: scopes, columns: λ), roles × layers, all on ONE
        colour scale with a colour bar labelled with `metric`; the baseline is marked on the colour bar."""
        ok = [r for r in self.records if r.get("score") is not None]
        scopes = list(dict.fromkeys(r["scope"] for r in ok)) or ["all"]
        lams = sorted({r["lambda"] for r in ok}) or [1.0]
        layers = sorted({r["layer"] for r in ok})
        points = list(dict.fromkeys(r["role"] for r in ok))
        vals = [r["score"] for r in ok] + ([self.baseline] if self.baseline is not None else [])
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        if 0 <= lo and hi <= 1:
            lo, hi = 0.0, 1.0  # rates: the full [0, 1] scale, comparable across sweeps
        elif lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        fig, axes = plt.subplots(
            len(scopes),
            len(lams),
            figsize=(0.55 * max(4, len(layers)) * len(lams) + 2.2, (0.5 * len(points) + 1.3) * len(scopes) + 1.2),
            squeeze=False,
            layout="constrained",
        )  # the figure title never overprints a panel title
        im = None
        for i, scope in enumerate(scopes):
            for j, lam in enumerate(lams):
                ax = axes[i][j]
                grid = [
                    [
                        next(
                            (
                                r["score"]
                                for r in ok
                                if r["layer"] == l and r["role"] == p and r["scope"] == scope and r["lambda"] == lam
                            ),
                            float("nan"),
                        )
                        for l in layers
                    ]
                    for p in points
                ]
                im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
                for yi, row in enumerate(grid):  # each cell carries its number, as refusal_sweep.png does
                    for xi, v in enumerate(row):
                        if v == v:
                            light = (v - lo) / ((hi - lo) or 1) < 0.6
                            ax.text(
                                xi,
                                yi,
                                f"{v:.2f}",
                                ha="center",
                                va="center",
                                fontsize=7,
                                color="white" if light else "black",
                            )
                ax.set_xticks(range(len(layers)))
                ax.set_xticklabels(layers, fontsize=8)
                ax.set_yticks(range(len(points)))
                ax.set_yticklabels(points if j == 0 else [""] * len(points), fontsize=8)
                if i == len(scopes) - 1:
                    ax.set_xlabel("layer")
                ax.set_title(f"scope={scope}, λ={lam}", fontsize=9)
        if im is not None:
            bar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9)
            bar.set_label(metric)
            if self.baseline is not None:
                bar.ax.axhline(self.baseline, color="red", lw=2)
        head = f"{metric}: each cell steers one role of one layer (unsteered baseline "
        head += f"{self.baseline:.3f}, red on the colour bar)" if self.baseline is not None else "(no baseline)"
        fig.suptitle(f"{title}\n{head}" if title else head, fontsize=9)
        save_figure_atomic(fig, path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path


@dataclass(frozen=True)
class Cell:
    """One sweep cell: steer the site of `role` at `layer` (`site`, from the site table) within `scope`."""

    layer: int
    role: str
    site: str
    scope: str = "all"
    lam: float = 1.0


def sweep_cells(
    model: HookedMDM,
    layers: Sequence[int] | None,
    roles: Sequence[str],
    scopes: Sequence[str] = ("all",),
    lambdas: Sequence[float] = (1.0,),
) -> list[Cell]:
    """The cells of a sweep, in table order (layer, role, scope, λ), every role, scope and layer checked first:
    a bad one is refused before anything is generated."""
    check_roles(roles, "roles")
    for scope in scopes:
        check_scope(scope)
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    bad = [layer for layer in layers if not 0 <= layer < model.n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has layers 0..{model.n_layers - 1}")
    return [
        Cell(layer, role, get_act_name(role, layer), scope, lam)
        for layer in layers
        for role in roles
        for scope in scopes
        for lam in lambdas
    ]


def cell_plan(plan_factory: Callable[[list[str]], Plan], cell: Cell) -> Plan:
    """The plan a cell steers with: `plan_factory([cell.site])` at the cell's strength, within its scope."""
    plan = plan_factory([cell.site]).strength(cell.lam)
    return plan if cell.scope == "all" else plan.scope(cell.scope)


def layer_sweep(
    model,
    plan_factory: Callable,
    prompts: Sequence[str],
    metric: Callable[[list[str]], float],
    *,
    layers: Sequence[int] | None = None,
    roles: Sequence[str] = ("resid_post", "mlp_out"),
    scopes: Sequence[str] = ("all",),
    lambdas: Sequence[float] = (1.0,),
    seed: int = 0,
    progress: bool = True,
    hook_points: Sequence[str] | None = None,
    **sampler_kwargs,
) -> SweepResult:
    """`plan_factory(sites) -> Plan` fits a plan for a list of sites (collect once, outside, and close over
    the activations); `metric(texts) -> float` scores one cell's generations. `hook_points`: the deprecated
    name of `roles` (kept for one release)."""
    if hook_points is not None:
        import warnings

        warnings.warn(
            "layer_sweep(hook_points=...) is deprecated; pass roles=... (the same site roles)",
            DeprecationWarning,
            stacklevel=2,
        )
        roles = hook_points
    if not prompts:
        raise ValueError("empty prompt set: the sweep needs prompts to generate from")
    cells = sweep_cells(model, layers, roles, scopes, lambdas)
    res = SweepResult()
    texts = model.generate(list(prompts), seed=seed, **sampler_kwargs).texts
    res.baseline = float(metric(texts))
    res.generations += [
        {"cell": "baseline", "site": None, "scope": None, "lambda": None, "prompt": p, "text": t}
        for p, t in zip(prompts, texts)
    ]
    for cell in tqdm(cells, desc="sweep", disable=not progress):
        rec = {
            "layer": cell.layer,
            "role": cell.role,
            "site": cell.site,
            "scope": cell.scope,
            "lambda": cell.lam,
            "score": None,
        }
        try:
            out = model.generate(list(prompts), plan=cell_plan(plan_factory, cell), seed=seed, **sampler_kwargs)
            res.generations += [
                {
                    "cell": f"{cell.site}|{cell.scope}|{cell.lam}",
                    "site": cell.site,
                    "scope": cell.scope,
                    "lambda": cell.lam,
                    "prompt": p,
                    "text": t,
                }
                for p, t in zip(prompts, out.texts)
            ]
            rec["score"] = float(metric(out.texts))
            rec["delta"] = rec["score"] - res.baseline
        except Exception as err:  # one failing cell must not lose the table
            rec["error"] = f"{type(err).__name__}: {err}"
            rec["traceback"] = traceback.format_exc(limit=3)
        res.records.append(rec)
    failed = [r for r in res.records if "error" in r]
    if res.records and len(failed) == len(res.records):
        raise RuntimeError(
            f"every one of the {len(failed)} sweep cells failed; the first: {failed[0]['error']}\n"
            f"{failed[0]['traceback']}"
        )
    return res
