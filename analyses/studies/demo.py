"""`mdm-lens demo`: the three seed papers on the embedded organism (tiny-mdm), offline, in a few minutes.

IFEval OT steering: collect contrastive activations → fit every estimator and per-timestep Linear-ACT → choose
λ on validation → score held-out test prompts with the IFEval checkers (95% intervals) next to the damage each
method does (NLL under the unsteered model, degenerate texts) → compose two maps and measure their
interference → per-timestep effects of one map. Then refusal ablation (`refusal_study`) and ILRR
(`ilrr_study`). A report folder: summary.md, summary.json, generations.jsonl (every generation), CSV, PNG.

The report is a list of sections: `ifeval_section` returns one (markdown lines + JSON data + figures); other
studies (refusal, ...) append theirs and `write_report` writes them all. Every generation goes through
`analyses.studies.runlog`, so a re-run of the same demo into the same folder generates nothing again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import torch

from mdm_lens.safefile import save_figure_atomic, write_text_atomic

if TYPE_CHECKING:
    from mdm_lens import HookedMDM

from .experiment import (
    METHODS,
    ExperimentConfig,
    ExperimentSetup,
    Task,
    generation_items,
    generation_work,
    run_experiment,
    setup_experiment,
)
from .experiment_plots import method_label
from .experiment_report import experiment_section, write_report as write_experiment
from .kernel import num, pct, rate_row, run_log
from ..plotting import plt
from ..records import Section, write_csv, write_json
from .tasks import organism_tasks

FULL = dict(n_calib=48, n_val=6, n_test=24, lambdas=(0.1, 0.25, 0.5, 1.0))  # brackets: issue 25
QUICK = dict(
    n_calib=6,
    n_val=2,
    n_test=3,
    lambdas=(1.0,),
    methods=("none", "mean_act", "linear_act"),
    sampler=dict(gen_length=16, steps=8, block_length=16),
)  # a smoke run: short answers, few steps
PAIR = ("change_case:english_lowercase", "punctuation:no_comma")  # a fixed pair for examples/compose_maps.py
MC = dict(mc_num=8, mc_batch=8)  # damage NLL: a small Monte-Carlo estimate on the tiny model
# smol-mdm (47M parameters, 13 blocks): fewer prompts and methods, fewer MC rows; sizes NOT yet timed against the
# 8-minute budget (the machine was never idle while it was built); the report states n and intervals either way
SMOL = dict(
    n_calib=32,
    n_val=4,
    n_test=12,
    lambdas=(0.5, 1.0),
    mc=dict(mc_num=4, mc_batch=4),
    methods=("none", "directional_ablation", "mean_act", "gaussian_ot", "linear_act"),
)


def demo_size(model, quick: bool) -> dict:
    """QUICK for `--quick`; SMOL for an organism of corpus v3 (smol-mdm); FULL for the tiny organisms."""
    if quick:
        return QUICK
    return SMOL if model.config.get("mdm_lens_corpus") == "v3" else FULL


def pick_pair(tasks, base_val: dict) -> tuple[list, str]:
    """Two constraints that both have room to move: unsteered validation accuracy strictly between 0 and 1
    (closest to 1/2 first); otherwise the two closest to 1/2, and the reason says so."""
    order = sorted(tasks, key=lambda t: (abs(base_val[t.name] - 0.5), t.name))
    movable = [t for t in order if 0 < base_val[t.name] < 1]
    if len(movable) >= 2:
        pair, why = movable[:2], "unsteered validation accuracy strictly between 0 and 1"
    else:
        pair, why = (
            order[:2],
            (
                "fewer than two constraints have unsteered validation accuracy strictly between "
                "0 and 1: the two closest to 1/2"
            ),
        )
    return pair, why + " (" + ", ".join(f"{t.name}: {pct(base_val[t.name])}" for t in pair) + ")"


def composition(
    model: HookedMDM,
    pair: Sequence[Task],
    chosen: dict,
    cfg: ExperimentConfig,
    setup: ExperimentSetup | Sequence[str],
    out: str | None = None,
    progress: bool = False,
) -> list[dict]:
    """Accuracy and damage on each of two constraints under no map, map A, map B and A + B (the plan sum
    applies A then B); Linear-ACT maps at their chosen λ (1.0 where `chosen` has none). `setup`: the
    protocol's (its cached plans are reused), or the list of sites to fit on. Generations saved (resumable)
    in `out` (None: a temporary folder)."""
    ta, tb = pair
    if not isinstance(setup, ExperimentSetup):
        setup = setup_experiment(model, pair, replace(cfg, sites=tuple(setup), methods=("none", "linear_act")))
    plans = setup.plans
    variants = {"none": [], "A": [ta.name], "B": [tb.name], "A+B": [ta.name, tb.name]}

    def plan_for(task, variant, lam):
        parts = [plans.plan(n, "linear_act", chosen.get(n) or 1.0) for n in variants[variant]]
        return sum(parts[1:], parts[0]) if parts else None

    items = [
        it
        for v in variants
        for t in pair
        for it in generation_items(t.name, "test", v, None, t.test[: cfg.n_test], cfg.batch_size)
    ]
    config = {**setup.config, "composition": {"A": ta.name, "B": tb.name, "lambda": chosen}}
    with run_log(out, config) as log:
        recs = log.run(items, generation_work(model, cfg, plan_for), desc="composition", progress=progress)
        log.merge()
    rows = []
    for v in variants:
        for t in pair:
            r = rate_row([r for r in recs if r["method"] == v and r["task"] == t.name], "follow_strict")
            rows.append(
                {
                    "plan": v,
                    "task": t.name,
                    "accuracy": r["rate"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "n": r["n"],
                    "nll": r["nll"],
                    "degenerate": r["degenerate"],
                }
            )
    return rows


def _plot_composition(rows, path, a: str, b: str, model_name: str):
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    plans = list(dict.fromkeys(r["plan"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.2), squeeze=False, sharex=True)
    for ax, t in zip(axes[0], tasks):
        for i, p in enumerate(plans[::-1]):
            r = next(r for r in rows if r["plan"] == p and r["task"] == t)
            acc = 100 * r["accuracy"]
            ax.errorbar([acc], [i], xerr=[[acc - 100 * r["ci_low"]], [100 * r["ci_high"] - acc]], fmt="o", capsize=3)
        ax.set_yticks(range(len(plans)))
        ax.set_yticklabels(plans[::-1])
        ax.set_xlim(-2, 102)
        ax.set_xlabel("strict accuracy (%), 95% interval")
        ax.set_title(f"scored on {t} (n={rows[0]['n']})", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"Composition on {model_name}: A = Linear-ACT map for {a}, B = Linear-ACT map for {b}\n"
        "A+B applies A then B at every shared site",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def ifeval_section(
    model, out: str, model_name: str, kinds=None, size: dict = FULL, seed: int = 0, progress: bool = True
) -> Section:
    """The IFEval study: protocol (all methods, λ on validation, accuracy next to damage), composition of two
    maps, per-step effects of one. Writes into `out` (experiment/, composition/, PNG, CSV). `kinds`: the
    constraints (default: the organism corpus's DEMO_KINDS)."""
    from analyses.studies.organism import corpus_for

    corpus = corpus_for(model.config)
    kinds = list(kinds or corpus.DEMO_KINDS)
    sampler = model.sampler_settings(**size.get("sampler", {}))  # recommended < checkpoint's < size's
    cfg = ExperimentConfig(
        lambdas=size["lambdas"],
        n_calib=size["n_calib"],
        n_val=size["n_val"],
        n_test=size["n_test"],
        seed=seed,
        sampler=sampler,
        batch_size=32,
        methods=size.get("methods", METHODS),
        **size.get("mc", MC),
    )
    tasks = organism_tasks(kinds, size["n_calib"], size["n_val"], size["n_test"], seed, corpus)
    exp_dir = os.path.join(out, "experiment")
    setup = setup_experiment(model, tasks, cfg, model_name)  # one set of plans for protocol, composition, effects
    result = run_experiment(model, tasks, cfg, progress=progress, out=exp_dir, setup=setup)
    write_experiment(result, exp_dir, title=f"IFEval protocol on {model_name}")
    chosen = {r["task"]: r["lambda"] for r in result["rows"] if r["method"] == "linear_act"}
    pair, why = pick_pair(tasks, result["unsteered_validation_accuracy"])
    comp = composition(model, pair, chosen, cfg, setup, os.path.join(out, "composition"), progress)
    a, b = pair[0].name, pair[1].name
    _plot_composition(comp, os.path.join(out, "composition.png"), a, b, model_name)
    write_csv(os.path.join(out, "composition.csv"), comp)

    from ..effects import step_effects

    first = tasks[0]
    lam = chosen.get(first.name) or 1.0
    eff = step_effects(
        model, [r.prompt for r in first.test[:4]], setup.plans.plan(first.name, "linear_act", lam), seed=seed, **sampler
    )
    eff.plot(
        os.path.join(out, "effects.png"),
        title=f"Per-step effects on {model_name}: Linear-ACT plan for "
        f"{first.name} at λ={lam} ({len(result['config']['sites'])} MLP sites), 4 of its test prompts",
    )
    write_csv(os.path.join(out, "effects.csv"), eff.records)

    md = [f"Model `{model_name}`; sampler {json.dumps(sampler)}; seed {seed}.", ""]
    md += experiment_section(result, method_label, figure_prefix="experiment/")
    md += [
        "## Composition (Linear-ACT maps, A then B)",
        "",
        f"A = map for `{a}` (λ={chosen.get(a)}), B = map for `{b}` (λ={chosen.get(b)}); the two constraints "
        f"were chosen as follows: {why}. Scored on the {comp[0]['n']} test prompts of each constraint.",
        "",
        "| plan | scored on | accuracy | 95% interval | NLL | degenerate |",
        "|---|---|---|---|---|---|",
    ]
    for r in comp:
        md.append(
            f"| {r['plan']} | {r['task'].split(':')[-1]} | {pct(r['accuracy'])} | "
            f"[{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] | {num(r['nll'])} | {pct(r['degenerate'])} |"
        )
    md += [
        "",
        "## Figures",
        "",
        "- `experiment/methods.png`: accuracy per method with 95% intervals, beside mean NLL and % degenerate.",
        "- `experiment/constraints.png`: accuracy per constraint and method, 95% intervals.",
        "- `composition.png`: accuracy of each constraint under no map, A, B and A+B.",
        f"- `effects.png`: per denoising step, what the Linear-ACT plan for `{first.name}` changes "
        "(activation change, KL on masked positions, share of differing tokens, where they flip).",
        "",
    ]
    baseline = {
        r["task"]: {k: r[k] for k in ("accuracy", "ci_low", "ci_high", "n")}
        for r in result["rows"]
        if r["method"] == "none"
    }
    data = {
        "methods": result["summary"],
        "baseline_per_constraint": baseline,
        "per_task": result["rows"],
        "samples": result["samples"],
        "lambda_choice": result["lambda_choice"],
        "composition": comp,
        "composition_pair": {"A": a, "B": b, "why": why},
        "effects": eff.records,
        "sizes": {k: v for k, v in size.items() if k not in ("sampler", "methods", "mc")}
        | {"lambdas": list(size["lambdas"]), **size.get("mc", MC)},
        "sampler": sampler,
        "sites": result["config"]["sites"],
        "tasks": result["tasks"],
    }
    return Section(
        "ifeval",
        ["## IFEval steering", ""] + md,
        data,
        ["experiment/methods.png", "experiment/constraints.png", "composition.png", "effects.png"],
    )


SMOKE = (
    "> **Smoke run (`--quick`)**: tiny sizes that check the pipeline runs end to end. Its numbers are not "
    "results: intervals are wide, λ choices rest on a handful of validation prompts, and baselines may be "
    "mostly degenerate at these lengths. Run without `--quick` for a report."
)


SMOKE_LINE = "SMOKE RUN (--quick): tiny sizes check the pipeline; these numbers are not results."


def smoke_warning(header: dict) -> list[str]:
    """The banner a `--quick` report opens with (none for a full run)."""
    return [SMOKE, ""] if header.get("quick") else []


def write_report(out: str, title: str, header: dict, sections: list[Section]) -> dict:
    """summary.json ({**header, section.key: section.data, ...}) and summary.md (title, header, sections)."""
    summary = dict(header)
    for s in sections:
        summary[s.key] = s.data
    write_json(os.path.join(out, "summary.json"), summary)
    lines = [f"# {title}", ""] + smoke_warning(header) + [f"- {k}: {v}" for k, v in header.items()] + [""]
    for s in sections:
        lines += s.markdown + [""]
    write_text_atomic("\n".join(lines), os.path.join(out, "summary.md"))
    return summary


def gather_generations(out: str, parts=("experiment", "composition", "refusal", "ilrr")) -> int:
    """`out/generations.jsonl`: every generation of every section in one file beside summary.json, each record
    tagged with its `section` (the per-section files stay: they are what a re-run resumes from)."""
    lines = []
    for part in parts:
        path = os.path.join(out, part, "generations.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                lines += [json.dumps({"section": part, **json.loads(l)}) for l in f if l.strip()]
    write_text_atomic("\n".join(lines) + "\n", os.path.join(out, "generations.jsonl"))
    return len(lines)


def table(summary: dict) -> str:
    """What the terminal shows: the IFEval methods table (accuracy, interval, damage), then one block each for
    refusal ablation and ILRR (rates with 95% intervals and damage), when the summary has them; then each
    section's verdict (`verdicts_terminal`: the same rows as summary.md's ### Verdict blocks); a smoke run says so
    first and last."""
    rows = [SMOKE_LINE, ""] if summary.get("quick") else []
    rows += [f"{'IFEval method':<22}{'accuracy':>10}   {'95% interval':<14}{'NLL':>7}  degenerate"]
    for m, s in summary["ifeval"]["methods"].items():
        rows.append(
            f"{method_label(m):<22}{100 * s['accuracy']:>9.1f}%   [{100 * s['ci_low']:5.1f}, "
            f"{100 * s['ci_high']:5.1f}]{num(s['nll']):>8}  {pct(s['degenerate'])}"
        )
    from .ilrr_study import LABELS

    blocks = [
        ("refusal", "refusal rate", lambda r: f"{r['method']} ({r['prompts']})"),
        ("ilrr", "positive rate", lambda r: LABELS[r["method"]]),
    ]
    for key, what, label in blocks:
        if key not in summary:
            continue
        rows += ["", f"{key.upper() + ' plan':<34}{what:>14}   {'95% interval':<14}{'NLL':>7}  degenerate"]
        for r in summary[key]["test"]:
            rows.append(
                f"{label(r):<34}{100 * r['rate']:>13.1f}%   [{100 * r['ci_low']:5.1f}, "
                f"{100 * r['ci_high']:5.1f}]{num(r['nll']):>8}  {pct(r['degenerate'])}"
            )
    if "refusal" in summary:
        b = summary["refusal"]["best"]
        rows += [  # two lines: the table fits a 100-column terminal
            f"(ablation at layer {b['layer']}, {b['role']}, scope {b['scope']}: the best sweep cell on validation;",
            " the paper: 87.56% -> 0.00% on LLaDA-8B-Instruct)",
        ]
    from .verdicts_terminal import terminal_verdicts

    rows += terminal_verdicts(summary)
    if summary.get("quick"):
        rows += ["", SMOKE_LINE]
    return "\n".join(rows)


def run_demo(
    out: str, model_name: str | None = None, quick: bool = False, seed: int = 0, progress: bool = True, kinds=None
) -> dict:
    from mdm_lens import HookedMDM

    from mdm_lens.organisms import default_organism

    model_name = model_name or default_organism()
    t0 = time.time()
    torch.manual_seed(seed)
    os.makedirs(out, exist_ok=True)
    # float32 on the CPU: on AVX2 machines without AMX bfloat16 matmuls ran 4-5x slower (measured 2026-12-07)
    model = HookedMDM.from_pretrained(model_name, dtype=torch.float32)
    size = demo_size(model, quick)
    if quick:
        from analyses.studies.organism import corpus_for

        kinds = list(kinds or corpus_for(model.config).DEMO_KINDS)[:2]
    section = ifeval_section(model, out, model_name, kinds, size, seed, progress)
    from .ilrr_study import demo_section as ilrr_section
    from .refusal_study import demo_section as refusal_section

    sections = [
        section,
        refusal_section(model, out, model_name, quick, seed, progress),
        ilrr_section(model, out, model_name, quick, seed, progress),
    ]
    from analyses.view.demo_views import write_demo_views  # one viewer page per section, linked in the summary

    sections.append(write_demo_views(model, out, sections, seed))
    n_gen = gather_generations(out)
    header = {
        "model": model_name,
        "quick": quick,
        "seed": seed,
        "generations": n_gen,
        "seconds": round(time.time() - t0, 1),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default)"),
    }
    return write_report(out, "mdm-lens demo report", header, sections)
