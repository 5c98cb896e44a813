"""The OT-steering paper's protocol: contrastive calibration -> fit every estimator -> pick λ on a
validation split -> score the test split with IFEval, with 95% intervals, per constraint and averaged."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from .experiment_plots import plot_bars, plot_radar
from .records import write_csv
from .stats import wilson_interval

METHODS = ("none", "directional_ablation", "mean_act", "actadd", "gaussian_ot", "linear_act", "bures_ot")
# The paper steers Directional Ablation and ActAdd on the residual stream, as their authors recommend.
RESIDUAL_METHODS = ("directional_ablation", "actadd")


@dataclass
class EvalRecord:
    """One IFEval-style item: a prompt and the verifiable instructions it carries."""

    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict]
    key: Any = None


@dataclass
class Task:
    """A steering target: calibration prompts without (source) / with (target) the instruction."""

    name: str
    source: list[str]
    target: list[str]
    val: list[EvalRecord]
    test: list[EvalRecord]


@dataclass
class ExperimentConfig:
    methods: tuple[str, ...] = METHODS
    sites: tuple[str, ...] | None = None            # default: mlp.hook_pre + mlp.hook_out of every layer
    residual_sites: tuple[str, ...] | None = None   # default: hook_resid_post of every layer
    lambdas: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    pooling: str = "mean"
    scope: str = "all"
    n_calib: int = 128
    n_val: int = 10
    n_test: int = 64
    batch_size: int = 32
    seed: int = 0
    sampler: dict = field(default_factory=dict)      # overrides of the family's recommended settings
    method_options: dict = field(default_factory=dict)


def default_sites(model) -> tuple[list[str], list[str]]:
    mlp = [f"blocks.{l}.mlp.{s}" for l in range(model.n_layers) for s in ("hook_pre", "hook_out")]
    resid = [f"blocks.{l}.hook_resid_post" for l in range(model.n_layers)]
    return mlp, resid


def _check_sizes(task: Task, cfg: ExperimentConfig) -> None:
    if len(task.source) != len(task.target):
        raise ValueError(f"task {task.name!r}: calibration sets have {len(task.source)} source and "
                         f"{len(task.target)} target prompts; the protocol pairs them, give equal sizes")
    if not task.source:
        raise ValueError(f"task {task.name!r}: empty calibration set")
    if len(task.test) < 1 or len(task.val) < 1:
        raise ValueError(f"task {task.name!r}: needs at least one validation and one test item")


def generate_texts(model, prompts: Sequence[str], *, plan, cfg: ExperimentConfig) -> list[str]:
    texts: list[str] = []
    for i in range(0, len(prompts), cfg.batch_size):
        out = model.generate(list(prompts[i:i + cfg.batch_size]), plan=plan, seed=cfg.seed, **cfg.sampler)
        texts += out.texts
    return texts


def score(records: Sequence[EvalRecord], texts: Sequence[str]) -> list[bool]:
    """Prompt-level strict IFEval verdicts."""
    from . import ifeval
    return [all(ifeval.check(t, r.instruction_id_list, r.kwargs, r.prompt, loose=False))
            for r, t in zip(records, texts)]


def _row(method: str, task: str, verdicts: list[bool], lam: float | None, val_acc: dict) -> dict:
    k, n = sum(verdicts), len(verdicts)
    lo, hi = wilson_interval(k, n)
    return {"method": method, "task": task, "accuracy": k / n, "n": n, "correct": k, "ci_low": lo,
            "ci_high": hi, "lambda": lam, "val_accuracy": val_acc}


def fit_plan(method: str, src, tgt, sites: Sequence[str], options: dict):
    from interventions import Plan, fit_map
    return Plan({s: fit_map(method, src[s], tgt[s], **options.get(method, {})) for s in sites})


def run_experiment(model, tasks: Sequence[Task], cfg: ExperimentConfig | None = None,
                   progress: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Run the whole protocol; returns a JSON-ready dict holding every setting needed to repeat it."""
    from mdm_lens.collect import collect_contrastive
    cfg = cfg or ExperimentConfig()
    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    mlp_sites, resid_sites = default_sites(model)
    sites = list(cfg.sites or mlp_sites)
    rsites = list(cfg.residual_sites or resid_sites)
    rows, chosen, t0 = [], {}, time.time()
    bar = tqdm(total=len(tasks) * len(cfg.methods), desc="experiment", disable=not progress)
    for task in tasks:
        _check_sizes(task, cfg)
        needed = sorted(set(sites) | (set(rsites) if set(cfg.methods) & set(RESIDUAL_METHODS) else set()))
        src, tgt = collect_contrastive(model, task.source[:cfg.n_calib], task.target[:cfg.n_calib], needed,
                                       pooling=cfg.pooling, scope=cfg.scope, progress=False,
                                       **_collect_kwargs(cfg))
        val, test = task.val[:cfg.n_val], task.test[:cfg.n_test]
        for method in cfg.methods:
            if method == "none":
                verdicts = score(test, generate_texts(model, [r.prompt for r in test], plan=None, cfg=cfg))
                rows.append(_row(method, task.name, verdicts, None, {}))
                bar.update(1)
                continue
            plan = fit_plan(method, src, tgt, rsites if method in RESIDUAL_METHODS else sites, cfg.method_options)
            val_acc = {}
            for lam in cfg.lambdas:
                v = score(val, generate_texts(model, [r.prompt for r in val], plan=plan.strength(lam), cfg=cfg))
                val_acc[lam] = sum(v) / len(v)
            best = max(cfg.lambdas, key=lambda lam: (val_acc[lam], -lam))   # ties -> the gentler map
            chosen[(method, task.name)] = best
            verdicts = score(test, generate_texts(model, [r.prompt for r in test], plan=plan.strength(best), cfg=cfg))
            rows.append(_row(method, task.name, verdicts, best, {str(k): v for k, v in val_acc.items()}))
            bar.update(1)
            if log:
                log(f"{task.name} {method}: λ={best} test acc {rows[-1]['accuracy']:.2f}")
    bar.close()
    return {"rows": rows, "summary": summarize(rows, cfg.methods), "config": _config_dict(cfg, sites, rsites),
            "tasks": [{"name": t.name, "n_calib": min(len(t.source), cfg.n_calib), "n_val": min(len(t.val), cfg.n_val),
                       "n_test": min(len(t.test), cfg.n_test)} for t in tasks],
            "model": getattr(model, "name_or_path", None), "seconds": time.time() - t0}


def _collect_kwargs(cfg: ExperimentConfig) -> dict:
    gen = cfg.sampler.get("gen_length") or cfg.sampler.get("max_new_tokens")
    return {"gen_length": gen} if gen else {}


def _config_dict(cfg: ExperimentConfig, sites, rsites) -> dict:
    d = asdict(cfg)
    d.update({"sites": list(sites), "residual_sites": list(rsites), "lambdas": list(cfg.lambdas),
              "methods": list(cfg.methods)})
    return d


def summarize(rows: list[dict], methods: Sequence[str]) -> dict:
    """Per method: pooled accuracy over tasks with a Wilson interval, and the mean of per-task accuracies."""
    out = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        if not mine:
            continue
        k, n = sum(r["correct"] for r in mine), sum(r["n"] for r in mine)
        lo, hi = wilson_interval(k, n)
        out[m] = {"accuracy": k / n, "ci_low": lo, "ci_high": hi, "n": n,
                  "mean_task_accuracy": sum(r["accuracy"] for r in mine) / len(mine),
                  "lambda": {r["task"]: r["lambda"] for r in mine}}
    return out


def write_result(result: dict, folder: str) -> dict[str, str]:
    """result.json, rows.csv and the two figure kinds (per-constraint radar, per-method bars)."""
    os.makedirs(folder, exist_ok=True)
    paths = {"json": os.path.join(folder, "result.json"), "csv": os.path.join(folder, "rows.csv"),
             "radar": os.path.join(folder, "radar.png"), "bars": os.path.join(folder, "bars.png")}
    with open(paths["json"] + ".tmp", "w") as f:
        json.dump(result, f, indent=2, default=str)
    os.replace(paths["json"] + ".tmp", paths["json"])
    write_csv(paths["csv"], result["rows"],
              columns=["method", "task", "accuracy", "ci_low", "ci_high", "n", "correct", "lambda"])
    plot_radar(result["rows"], paths["radar"])
    plot_bars(result["summary"], paths["bars"])
    return paths
