"""`mdm-lens demo`: the whole toolkit on the embedded tiny-if organism, offline, in a few minutes.

Collect contrastive activations → fit every estimator → choose λ on validation → score held-out test
prompts with the IFEval checkers (95% intervals) → compose two maps and measure their interference →
per-timestep effects of one map → a report folder (summary.md, summary.json, CSV, PNG).
"""
from __future__ import annotations

import json
import os
import time

import torch

from .experiment import (ExperimentConfig, fit_plan, generate_texts, run_experiment, score,
                         write_result)
from .experiment_plots import method_label
from .plotting import plt
from .records import write_csv
from .stats import wilson_interval
from .tasks import organism_tasks

KINDS = ("change_case:english_lowercase", "punctuation:no_comma", "change_case:english_capital", "startend:end_checker")
PAIR = ("change_case:english_lowercase", "punctuation:no_comma")
FULL = dict(n_calib=48, n_val=6, n_test=24, lambdas=(0.5, 1.0))
QUICK = dict(n_calib=6, n_val=2, n_test=3, lambdas=(1.0,))


def composition(model, tasks, chosen: dict, cfg: ExperimentConfig, sites) -> list[dict]:
    """Accuracy on each of two constraints under map A, map B and A + B (the plan sum applies A then B)."""
    from mdm_lens.collect import collect_contrastive
    ta, tb = tasks
    plans = {}
    for t in (ta, tb):
        src, tgt = collect_contrastive(model, t.source[:cfg.n_calib], t.target[:cfg.n_calib], sites, progress=False,
                                       gen_length=cfg.sampler.get("gen_length"))
        plans[t.name] = fit_plan("linear_act", src, tgt, sites, {}).strength(chosen.get(t.name) or 1.0)
    variants = {"none": None, "A": plans[ta.name], "B": plans[tb.name], "A+B": plans[ta.name] + plans[tb.name]}
    rows = []
    for vname, plan in variants.items():
        for t in (ta, tb):
            v = score(t.test[:cfg.n_test], generate_texts(model, [r.prompt for r in t.test[:cfg.n_test]], plan=plan, cfg=cfg))
            lo, hi = wilson_interval(sum(v), len(v))
            rows.append({"plan": vname, "task": t.name, "accuracy": sum(v) / len(v), "ci_low": lo, "ci_high": hi,
                         "n": len(v)})
    return rows


def _plot_composition(rows, path):
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    plans = list(dict.fromkeys(r["plan"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(plans)
    for i, p in enumerate(plans):
        vals = [100 * next(r["accuracy"] for r in rows if r["plan"] == p and r["task"] == t) for t in tasks]
        ax.bar([j + i * width for j in range(len(tasks))], vals, width, label=p)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))])
    ax.set_xticklabels([t.split(":")[-1] for t in tasks])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(title="plan", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _markdown(summary: dict) -> str:
    lines = ["# mdm-lens demo report", "", f"Model: `{summary['model']}`; {summary['seconds']:.0f} s on "
             f"{torch.get_num_threads()} threads.", "", "## IFEval accuracy on held-out test prompts (95% Wilson interval)",
             "", "| method | accuracy | 95% interval | λ per constraint |", "|---|---|---|---|"]
    for m, s in summary["methods"].items():
        lam = ", ".join(f"{k.split(':')[-1]}={v}" for k, v in s["lambda"].items())
        lines.append(f"| {method_label(m)} | {100 * s['accuracy']:.1f}% | [{100 * s['ci_low']:.1f}, "
                     f"{100 * s['ci_high']:.1f}] | {lam or '-'} |")
    lines += ["", "## Composition (Linear-ACT maps, A then B)", "", "| plan | constraint | accuracy |", "|---|---|---|"]
    for r in summary["composition"]:
        lines.append(f"| {r['plan']} | {r['task'].split(':')[-1]} | {100 * r['accuracy']:.1f}% |")
    lines += ["", "Figures: `experiment/radar.png`, `experiment/bars.png`, `composition.png`, `effects.png`.", ""]
    return "\n".join(lines)


def table(summary: dict) -> str:
    rows = [f"{'method':<22}{'accuracy':>10}   95% interval"]
    for m, s in summary["methods"].items():
        rows.append(f"{method_label(m):<22}{100 * s['accuracy']:>9.1f}%   [{100 * s['ci_low']:.1f}, "
                    f"{100 * s['ci_high']:.1f}]")
    return "\n".join(rows)


def run_demo(out: str, model_name: str = "tiny-if", quick: bool = False, seed: int = 0, progress: bool = True,
             kinds=KINDS) -> dict:
    from mdm_lens import HookedMDM

    from .effects import step_effects
    t0 = time.time()
    torch.manual_seed(seed)
    os.makedirs(out, exist_ok=True)
    model = HookedMDM.from_pretrained(model_name)
    size = QUICK if quick else FULL
    kinds = kinds[:2] if quick else kinds
    sampler = dict(model.config.get("mdm_lens_sampler", {}))
    cfg = ExperimentConfig(lambdas=size["lambdas"], n_calib=size["n_calib"], n_val=size["n_val"],
                           n_test=size["n_test"], seed=seed, sampler=sampler, batch_size=32)
    tasks = organism_tasks(kinds, size["n_calib"], size["n_val"], size["n_test"], seed)
    result = run_experiment(model, tasks, cfg, progress=progress)
    result["model"] = model_name
    write_result(result, os.path.join(out, "experiment"))
    chosen = {r["task"]: r["lambda"] for r in result["rows"] if r["method"] == "linear_act"}
    sites = result["config"]["sites"]
    pair = [t for t in tasks if t.name in PAIR]
    comp = composition(model, pair, chosen, cfg, sites) if len(pair) == 2 else []
    if comp:
        _plot_composition(comp, os.path.join(out, "composition.png"))
    first = tasks[0]
    from mdm_lens.collect import collect_contrastive
    src, tgt = collect_contrastive(model, first.source, first.target, sites, progress=False,
                                   gen_length=sampler.get("gen_length"))
    plan = fit_plan("linear_act", src, tgt, sites, {}).strength(chosen.get(first.name) or 1.0)
    eff = step_effects(model, [r.prompt for r in first.test[:4]], plan, seed=seed, **sampler)
    eff.plot(os.path.join(out, "effects.png"))
    write_csv(os.path.join(out, "effects.csv"), eff.records)
    write_csv(os.path.join(out, "composition.csv"), comp)
    summary = {"model": model_name, "quick": quick, "seed": seed, "seconds": time.time() - t0,
               "methods": result["summary"], "per_task": result["rows"], "composition": comp,
               "effects": eff.records, "sizes": size | {"lambdas": list(size["lambdas"])}, "sampler": sampler,
               "sites": sites}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(_markdown(summary))
    return summary
