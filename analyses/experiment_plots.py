"""The paper's two figure kinds: per-constraint radar and per-method accuracy bars with intervals."""
from __future__ import annotations

import math

from .plotting import plt


METHOD_LABELS = {"none": "No steering", "directional_ablation": "Directional Ablation", "mean_act": "Mean-ACT",
                 "actadd": "Activation Addition", "gaussian_ot": "Gaussian OT", "linear_act": "Linear-ACT",
                 "bures_ot": "Full-cov OT"}


def method_label(method: str) -> str:
    """The paper's display name of a steering method (the method key itself when it has none)."""
    return METHOD_LABELS.get(method, method)


def plot_radar(rows: list[dict], path: str) -> None:
    tasks = sorted({r["task"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    acc = {(r["method"], r["task"]): r["accuracy"] for r in rows}
    angles = [2 * math.pi * i / max(len(tasks), 1) for i in range(len(tasks))] + [0.0]
    fig = plt.figure(figsize=(7, 7))
    ax = fig.add_subplot(111, polar=True)
    for m in methods:
        vals = [100 * acc.get((m, t), 0.0) for t in tasks]
        ax.plot(angles, vals + vals[:1], label=method_label(m), linewidth=1.5)
    ax.set_xticks(angles[:-1])
    ax.set_xticklabels([t.split(":")[-1] for t in tasks], fontsize=8)
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=8)
    ax.set_title("IFEval accuracy (%) per constraint")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_bars(summary: dict, path: str) -> None:
    methods = list(summary)
    acc = [100 * summary[m]["accuracy"] for m in methods]
    err = [[100 * (summary[m]["accuracy"] - summary[m]["ci_low"]) for m in methods],
           [100 * (summary[m]["ci_high"] - summary[m]["accuracy"]) for m in methods]]
    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2, 4))
    ax.bar(range(len(methods)), acc, yerr=err, capsize=4, color="#4C72B0")
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels([method_label(m) for m in methods], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%) with 95% interval")
    ax.set_ylim(0, 100)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
