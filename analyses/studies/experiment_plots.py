"""The protocol's figures: dot plots with 95% intervals (methods never hide each other as on a radar), with the
damage beside the accuracy so that a method winning by breaking the text shows it."""

from __future__ import annotations

from mdm_lens.safefile import save_figure_atomic

from ..plotting import plt

METHOD_LABELS = {
    "none": "No steering",
    "directional_ablation": "Directional Ablation",
    "mean_act": "Mean-ACT",
    "actadd": "Activation Addition",
    "gaussian_ot": "Gaussian OT",
    "linear_act": "Linear-ACT",
    "bures_ot": "Full-cov OT",
    "linear_act_t": "Linear-ACT per t",
}


def method_label(method: str) -> str:
    """The paper's display name of a steering method (the method key itself when it has none)."""
    return METHOD_LABELS.get(method, method)


def plot_methods(summary: dict, path: str, subtitle: str = "") -> str:
    """Three panels sharing the method axis: accuracy (95% Wilson interval), mean NLL per token under the
    unsteered model, share of degenerate texts. The unsteered accuracy is a dashed reference line."""
    methods = list(summary)[::-1]  # first method on top
    y = range(len(methods))
    fig, axes = plt.subplots(
        1, 3, figsize=(11, 0.45 * len(methods) + 1.8), sharey=True, gridspec_kw={"width_ratios": [2.2, 1, 1]}
    )
    acc = [100 * summary[m]["accuracy"] for m in methods]
    lo = [a - 100 * summary[m]["ci_low"] for a, m in zip(acc, methods)]
    hi = [100 * summary[m]["ci_high"] - a for a, m in zip(acc, methods)]
    axes[0].errorbar(acc, y, xerr=[lo, hi], fmt="o", color="#4C72B0", capsize=3)
    if "none" in summary:
        axes[0].axvline(100 * summary["none"]["accuracy"], color="grey", ls="--", lw=1, label="no steering")
        axes[0].legend(
            fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.16 - 0.6 / max(1, len(methods))), frameon=False
        )  # below the axis: never over a method's interval
    axes[0].set_xlim(-2, 102)
    axes[0].set_xlabel("strict IFEval accuracy (%), 95% Wilson interval")
    nll = [summary[m]["nll"] for m in methods]
    axes[1].plot([v if v is not None else float("nan") for v in nll], y, "o", color="#C44E52")
    axes[1].set_xlabel("mean NLL / token\n(unsteered model, nats)")
    deg = [100 * summary[m]["degenerate"] for m in methods]
    axes[2].barh(list(y), deg, color="#8172B2")
    for yi, v in zip(y, deg):  # the value beside every bar: an all-zero panel shows its zeros
        axes[2].text(v + 2, yi, f"{v:.0f}%", va="center", fontsize=7)
    axes[2].set_xlim(0, 100)
    axes[2].set_xlabel("degenerate texts (%)")
    axes[0].set_yticks(list(y))
    axes[0].set_yticklabels([method_label(m) for m in methods])
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    n = summary[next(iter(summary))]["n"]
    fig.suptitle(f"Accuracy and damage per method (test prompts, n={n} pooled over tasks)\n{subtitle}", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_constraints(rows: list[dict], path: str, subtitle: str = "") -> str:
    """One panel per constraint (grid), methods on the y axis, accuracy with its 95% interval; a hollow
    marker is a method whose texts are mostly degenerate."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))[::-1]
    cols = min(2, len(tasks))
    nrows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(
        nrows, cols, figsize=(5.2 * cols, (0.4 * len(methods) + 1.4) * nrows), squeeze=False, sharex=True
    )
    for ax, t in zip(axes.flat, tasks):
        for i, m in enumerate(methods):
            r = next((r for r in rows if r["task"] == t and r["method"] == m), None)
            if r is None:
                continue
            a = 100 * r["accuracy"]
            broken = (r.get("degenerate") or 0) >= 0.5
            ax.errorbar(
                [a],
                [i],
                xerr=[[a - 100 * r["ci_low"]], [100 * r["ci_high"] - a]],
                fmt="o",
                capsize=3,
                color="#C44E52" if broken else "#4C72B0",
                mfc="white" if broken else None,
            )
        base = next((r for r in rows if r["task"] == t and r["method"] == "none"), None)
        if base is not None:  # the unsteered reference every steered row is read against
            ax.axvline(100 * base["accuracy"], color="grey", ls="--", lw=1, zorder=0)
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels([method_label(m) for m in methods], fontsize=8)
        n = next(r["n"] for r in rows if r["task"] == t)
        ax.set_title(f"{t} (n={n})", fontsize=9)
        ax.set_xlim(-2, 102)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("strict accuracy (%), 95% interval")
    fig.suptitle(
        f"Accuracy per constraint (hollow red: ≥ 50% degenerate texts; dashed: unsteered)\n{subtitle}", fontsize=10
    )
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path
