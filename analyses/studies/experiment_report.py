"""From generation records to the protocol's result: λ choice on validation, accuracy with 95% Wilson intervals
next to damage (mean NLL per token under the unsteered model, share of degenerate texts, length), flags for
methods that score exactly the baseline, quoted samples, and the report files (result.json, rows.csv,
generations are written by the run log; summary.md and figures here).

Everything is computed from the records alone, so a resumed or a sharded run reports exactly what a fresh
single-process run reports."""

from __future__ import annotations

import json
import os
from typing import Sequence

from mdm_lens.safefile import write_text_atomic

from ..records import write_csv
from ..stats import wilson_interval
from .kernel import num, pct
from .verdicts import verdict_lines


def damage_stats(recs: Sequence[dict]) -> dict:
    """Mean NLL per token (texts with an NLL), share degenerate, mean length in tokens, over `recs`."""
    nll = [r["nll"] for r in recs if r.get("nll") is not None]
    n = len(recs)
    return {
        "nll": sum(nll) / len(nll) if nll else None,
        "degenerate": sum(r["degenerate"] for r in recs) / n if n else None,
        "n_tokens": sum(r["n_tokens"] for r in recs) / n if n else None,
    }


def _select(recs, **kw):
    return [r for r in recs if all(r[k] == v for k, v in kw.items())]


def choose_lambda(recs: Sequence[dict], task: str, method: str, cfg) -> dict:
    """λ with the best validation accuracy among those within the damage cap (ties -> the gentler λ)."""
    base = damage_stats(_select(recs, task=task, split="val", method="none"))
    table = {}
    for lam in cfg.lambdas:
        mine = _select(recs, task=task, split="val", method=method, **{"lambda": lam})
        st = damage_stats(mine)
        ok = st["degenerate"] <= max(cfg.max_degenerate, base["degenerate"])
        if cfg.max_nll_increase is not None and st["nll"] is not None and base["nll"] is not None:
            ok = ok and st["nll"] - base["nll"] <= cfg.max_nll_increase
        table[lam] = {"accuracy": sum(r["follow_strict"] for r in mine) / len(mine), **st, "within_cap": ok}
    eligible = [lam for lam in cfg.lambdas if table[lam]["within_cap"]]
    if eligible:
        best = max(eligible, key=lambda lam: (table[lam]["accuracy"], -lam))
        how = "best validation accuracy within the damage cap (ties: smaller λ)"
    else:
        best = min(cfg.lambdas, key=lambda lam: (table[lam]["degenerate"], table[lam]["nll"] or 0.0, lam))
        how = "no λ within the damage cap: the least damaging λ"
    grid = sorted(cfg.lambdas)
    edge = None if len(grid) < 2 else "lower" if best == grid[0] else "upper" if best == grid[-1] else None
    # an edge λ that only ties its inner neighbour was picked by the tie rule, not because the score still rises
    # towards the edge: no sign that the optimum lies outside the grid, so no edge warning (the row says "flat")
    inner = None if edge is None else grid[1] if edge == "lower" else grid[-2]
    if inner is not None and table[best]["accuracy"] <= table[inner]["accuracy"]:
        edge = None
    flat = len({v["accuracy"] for v in table.values()}) == 1
    return {
        "lambda": best,
        "how": how,
        "at_edge": edge is not None,
        "edge": edge,
        "flat": flat,
        "validation": {str(k): v for k, v in table.items()},
        "unsteered_validation": base,
    }


def _row(task: str, method: str, recs: list[dict], choice: dict | None) -> dict:
    k, n = sum(r["follow_strict"] for r in recs), len(recs)
    lo, hi = wilson_interval(k, n)
    st = damage_stats(recs)
    return {
        "method": method,
        "task": task,
        "accuracy": k / n,
        "n": n,
        "correct": k,
        "ci_low": lo,
        "ci_high": hi,
        "loose_accuracy": sum(r["follow_loose"] for r in recs) / n,
        "nll": st["nll"],
        "degenerate": st["degenerate"],
        "n_tokens": st["n_tokens"],
        "lambda": choice["lambda"] if choice else None,
        "lambda_how": choice["how"] if choice else None,
        "lambda_edge": choice.get("edge") if choice else None,
        "val_accuracy": {lam: v["accuracy"] for lam, v in choice["validation"].items()} if choice else {},
    }


def baseline_flag(row: dict, recs: list[dict], base_recs: list[dict], choice: dict | None) -> str | None:
    """Why a steered method scores exactly the unsteered accuracy (None when it does not)."""
    base_k = sum(r["follow_strict"] for r in base_recs)
    if row["method"] == "none" or row["correct"] != base_k:
        return None
    reasons = []
    if [r["text"] for r in recs] == [r["text"] for r in base_recs]:
        reasons.append("identical texts")
    if row["degenerate"] and row["degenerate"] >= 0.5:
        reasons.append(f"degenerate texts ({100 * row['degenerate']:.0f}%)")
    if choice and choice["at_edge"]:
        reasons.append(f"λ={choice['lambda']} at the grid's edge")
    if choice and choice.get("flat"):
        reasons.append("validation accuracy equal at every λ")
    return "; ".join(reasons) or "different texts, same score"


def summarize(rows: list[dict], methods: Sequence[str]) -> dict:
    """Per method: pooled accuracy over tasks with a Wilson interval, mean of per-task accuracies, damage."""
    out = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        if not mine:
            continue
        k, n = sum(r["correct"] for r in mine), sum(r["n"] for r in mine)
        lo, hi = wilson_interval(k, n)
        nll = [r["nll"] for r in mine if r["nll"] is not None]
        out[m] = {
            "accuracy": k / n,
            "ci_low": lo,
            "ci_high": hi,
            "n": n,
            "mean_task_accuracy": sum(r["accuracy"] for r in mine) / len(mine),
            "nll": sum(x for x in nll) / len(nll) if nll else None,
            "degenerate": sum(r["degenerate"] * r["n"] for r in mine) / n,
            "lambda": {r["task"]: r["lambda"] for r in mine},
            "flags": {r["task"]: r["baseline_flag"] for r in mine if r.get("baseline_flag")},
            "edges": {r["task"]: r["lambda_edge"] for r in mine if r.get("lambda_edge")},
        }
    return out


def samples(recs: list[dict], method: str) -> dict:
    """The best (follows, not degenerate, lowest NLL) and the worst (degenerate first, then highest NLL) steered
    test generation of a method."""
    mine = _select(recs, split="test", method=method)
    if not mine:
        return {}
    nll = lambda r: r["nll"] if r["nll"] is not None else float("inf")  # noqa: E731
    best = min(mine, key=lambda r: (not r["follow_strict"], r["degenerate"], nll(r)))
    worst = max(mine, key=lambda r: (r["degenerate"], nll(r)))
    keep = ("task", "lambda", "prompt", "text", "follow_strict", "nll", "degenerate", "reasons")
    return {"best": {k: best[k] for k in keep}, "worst": {k: worst[k] for k in keep}}


def result_from_records(recs: list[dict], tasks, cfg, choice: dict, config: dict) -> dict:
    rows = []
    for t in tasks:
        base = _select(recs, task=t.name, split="test", method="none")
        for m in cfg.methods:
            if m == "none":
                rows.append({**_row(t.name, m, base, None), "baseline_flag": None})
                continue
            c = choice[(t.name, m)]
            mine = _select(recs, task=t.name, split="test", method=m, **{"lambda": c["lambda"]})
            row = _row(t.name, m, mine, c)
            row["baseline_flag"] = baseline_flag(row, mine, base, c)
            rows.append(row)
    test_recs = [r for r in recs if r["split"] == "test"]
    return {
        "rows": rows,
        "summary": summarize(rows, cfg.methods),
        "config": config["experiment"],
        "tasks": config["tasks"],
        "model": config["model"],
        "lambda_choice": {f"{t}|{m}": c for (t, m), c in choice.items()},
        "samples": {m: samples(test_recs, m) for m in cfg.methods if m != "none"},
        "unsteered_validation_accuracy": {
            t.name: _acc(_select(recs, task=t.name, split="val", method="none")) for t in tasks
        },
    }


def _acc(recs):
    return sum(r["follow_strict"] for r in recs) / len(recs) if recs else None


# ------------------------------------------------------------------------------------------- report files
def methods_table(summary: dict, label=lambda m: m) -> list[str]:
    """Markdown table: accuracy with its 95% interval and damage, one line per method."""
    lines = [
        "| method | accuracy | 95% interval | mean NLL/token (unsteered model) | degenerate | λ per task | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, s in summary.items():
        lam = ", ".join(f"{k.split(':')[-1]}={v}" for k, v in s["lambda"].items() if v is not None)
        flags = "; ".join(
            [f"{k.split(':')[-1]}: same score as unsteered ({v})" for k, v in s.get("flags", {}).items()]
            + [f"⚠ {k.split(':')[-1]}: λ at the grid's {v} edge" for k, v in s.get("edges", {}).items()]
        )
        lines.append(
            f"| {label(m)} | {pct(s['accuracy'])} | [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}] | "
            f"{num(s['nll'])} | {pct(s['degenerate'])} | {lam or '-'} | {flags or '-'} |"
        )
    return lines


def row_notes(r: dict) -> str:
    notes = [f"same score as unsteered ({r['baseline_flag']})"] if r.get("baseline_flag") else []
    if r.get("lambda_edge"):
        notes.append(f"⚠ λ at the grid's {r['lambda_edge']} edge")
    return "; ".join(notes) or "-"


def edge_warning(rows: list[dict], grid) -> list[str]:
    """A warning when chosen λs sit on the grid's edge: the optimum may lie outside the grid."""
    steered = [r for r in rows if r["method"] != "none"]
    at = [r for r in steered if r.get("lambda_edge")]
    if not at:
        return []
    lower = sum(r["lambda_edge"] == "lower" for r in at)
    return [
        f"> ⚠ λ at the edge of the grid {list(grid)} in {len(at)} of {len(steered)} (task, method) cells "
        f"({lower} at the lower edge, {len(at) - lower} at the upper): the best strength may lie outside the "
        "grid; widen it (`--lambdas`, e.g. 0.05 … 2) before reading these numbers as the method's best.",
        "",
    ]


def quote(text: str, limit: int = 240) -> str:
    t = text if len(text) <= limit else text[:limit] + "…"
    return "`" + json.dumps(t, ensure_ascii=False)[1:-1].replace("`", "'") + "`"


def samples_section(samples_by_method: dict, label=lambda m: m) -> list[str]:
    lines = [
        "## Best and worst steered test samples per method",
        "",
        "Best: follows the instruction, not degenerate, lowest NLL. Worst: degenerate first, then highest NLL.",
        "",
    ]
    for m, s in samples_by_method.items():
        if not s:
            continue
        for which in ("best", "worst"):
            r = s[which]
            lines.append(
                f"- **{label(m)}, {which}** ({r['task'].split(':')[-1]}, λ={r['lambda']}, "
                f"follows={r['follow_strict']}, NLL={num(r['nll'])}, degenerate={r['degenerate']}"
                f"{' ' + ','.join(r['reasons']) if r['reasons'] else ''}): {quote(r['text'])}"
            )
    return lines + [""]


def experiment_section(result: dict, label=lambda m: m, figure_prefix: str = "") -> list[str]:
    """The protocol's report as markdown lines (reused by the demo report)."""
    cfg, tasks = result["config"], result["tasks"]
    sizes = ", ".join(
        f"{t['name'].split(':')[-1]}: {t['n_calib']} calibration pairs / {t['n_val']} validation / {t['n_test']} test"
        for t in tasks
    )
    cap = f"degenerate share ≤ max({cfg['max_degenerate']}, unsteered share)" + (
        f", mean NLL ≤ unsteered + {cfg['max_nll_increase']} nats/token"
        if cfg["max_nll_increase"] is not None
        else ", no NLL cap"
    )
    lines = [
        "## IFEval protocol: accuracy next to damage",
        "",
        f"- Model: `{result['model']}`; methods: {', '.join(label(m) for m in cfg['methods'])}.",
        f"- n per task: {sizes}.",
        f"- λ grid {cfg['lambdas']}; λ chosen per (task, method) on the validation split only: best strict "
        f"accuracy among λ within the damage cap ({cap}); ties go to the smaller λ.",
        f"- Sites: {len(cfg['sites'])} ({cfg['sites'][0]} … {cfg['sites'][-1]}) for the OT/ACT maps, "
        f"{len(cfg['residual_sites'])} residual-stream sites for Directional Ablation and ActAdd; calibration "
        f"activations pooled by `{cfg['pooling']}` over scope `{cfg['scope']}`.",
        f"- Seed {cfg['seed']} for splits and generation; sampler settings (resolved) "
        f"{json.dumps(result.get('sampler_resolved', cfg['sampler']))}; damage = NLL per "
        f"token of the response under the unsteered model (LLaDA Monte-Carlo estimate, {cfg['mc_num']} rows, "
        f"seed {cfg['seed']}) and the degeneracy rules of `analyses.damage`.",
        "- Accuracy is prompt-level strict IFEval over all tasks pooled, with a 95% Wilson interval.",
        "",
    ]
    lines += methods_table(result["summary"], label) + [""]
    lines += verdict_lines(result["summary"], label) + edge_warning(result["rows"], cfg["lambdas"])
    lines += [
        "### Per task",
        "",
        "| task | method | λ | accuracy | 95% interval | loose | NLL | degenerate | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['task'].split(':')[-1]} | {label(r['method'])} | {r['lambda'] if r['lambda'] is not None else '-'} "
            f"| {pct(r['accuracy'])} | [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] | "
            f"{pct(r['loose_accuracy'])} | {num(r['nll'])} | {pct(r['degenerate'])} | {row_notes(r)} |"
        )
    lines += [""] + samples_section(result["samples"], label)
    lines += [
        f"Figures: `{figure_prefix}methods.png` (accuracy per method with 95% intervals, beside mean NLL and "
        f"% degenerate), `{figure_prefix}constraints.png` (accuracy per constraint and method, 95% intervals). "
        f"Every generation: `{figure_prefix}generations.jsonl`.",
        "",
    ]
    return lines


def write_report(result: dict, folder: str, title: str | None = None) -> dict[str, str]:
    """result.json, rows.csv, summary.md, methods.png and constraints.png in `folder`."""
    from .experiment_plots import method_label, plot_constraints, plot_methods

    os.makedirs(folder, exist_ok=True)
    paths = {
        k: os.path.join(folder, f)
        for k, f in (
            ("json", "result.json"),
            ("csv", "rows.csv"),
            ("md", "summary.md"),
            ("methods", "methods.png"),
            ("constraints", "constraints.png"),
        )
    }
    write_text_atomic(json.dumps(result, indent=2, default=str, sort_keys=True), paths["json"])
    write_csv(
        paths["csv"],
        result["rows"],
        columns=[
            "method",
            "task",
            "accuracy",
            "ci_low",
            "ci_high",
            "n",
            "correct",
            "loose_accuracy",
            "nll",
            "degenerate",
            "n_tokens",
            "lambda",
            "baseline_flag",
        ],
    )
    write_text_atomic(
        "\n".join([f"# {title or 'mdm-lens experiment'}", ""] + experiment_section(result, method_label)), paths["md"]
    )
    subtitle = f"{result['model'] or 'unnamed model'} · λ chosen on validation (grid {result['config']['lambdas']})"
    plot_methods(result["summary"], paths["methods"], subtitle)
    plot_constraints(result["rows"], paths["constraints"], subtitle)
    return paths
