"""Moment mismatch per site: what each transport map leaves unmatched between source and target.

For source A and target B (and for T(A) vs B per estimator): ‖m_b − m_a‖, the per-neuron σ ratio
(median and IQR), Gaussian W2 with diagonal and with full covariance, and the empirical 1-D W2 per neuron.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from jaxtyping import Float

from mdm_lens.safefile import save_figure_atomic

from .plotting import plt


def gaussian_w2_full(A: Float[torch.Tensor, "n d"], B: Float[torch.Tensor, "m d"]) -> float:
    """W2 between Gaussians fitted to A and B; exact via the sample span (tr terms need no d × d matrix)."""
    ma, mb = A.mean(0), B.mean(0)
    Ac, Bc = A - ma, B - mb
    # tr(Σa) + tr(Σb) - 2 tr((Σa^½ Σb Σa^½)^½); the cross term's nonzero spectrum equals that of
    # (Xa Xbᵀ)(Xb Xaᵀ)/(n m) up to the square root: the singular values of Xa Xbᵀ / sqrt(n m)
    cross = torch.linalg.svdvals(Ac @ Bc.T / (A.shape[0] * B.shape[0]) ** 0.5).sum()
    tra, trb = (Ac * Ac).sum() / A.shape[0], (Bc * Bc).sum() / B.shape[0]
    w2sq = float((ma - mb).pow(2).sum() + tra + trb - 2 * cross)
    return max(w2sq, 0.0) ** 0.5


def gaussian_w2_diag(A: torch.Tensor, B: torch.Tensor) -> float:
    sa, sb = A.std(0, unbiased=False), B.std(0, unbiased=False)
    return float(((A.mean(0) - B.mean(0)).pow(2) + (sa - sb).pow(2)).sum()) ** 0.5


def empirical_w2_1d(A: torch.Tensor, B: torch.Tensor) -> float:
    """Mean over neurons of the 1-D W2 between empirical distributions (quantile matching)."""
    n = min(A.shape[0], B.shape[0])
    from interventions.estimators import quantile_match

    qa, qb = quantile_match(A, n), quantile_match(B, n)
    return float(((qa - qb).pow(2).mean(0)).sqrt().mean())


def mismatch(A: torch.Tensor, B: torch.Tensor) -> dict:
    A, B = A.double(), B.double()
    ratio = B.std(0) / A.std(0).clamp_min(1e-12)
    q = torch.quantile(ratio, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {
        "mean_gap": float((B.mean(0) - A.mean(0)).norm()),
        "sigma_ratio_median": float(q[1]),
        "sigma_ratio_iqr": float(q[2] - q[0]),
        "w2_gauss_diag": gaussian_w2_diag(A, B),
        "w2_gauss_full": gaussian_w2_full(A, B),
        "w2_empirical_1d": empirical_w2_1d(A, B),
    }


@dataclass
class MomentReport:
    """One record per (data, site, estimator); `data` is "in-sample" (the pairs the maps were fitted on) or
    "held-out" (calibration pairs the fit never saw: what a map transports, not what it memorised)."""

    records: list[dict] = field(default_factory=list)

    def plot(self, path: str, metric: str = "w2_gauss_full", title: str | None = None) -> str:
        sites = list(dict.fromkeys(r["site"] for r in self.records))
        datas = list(dict.fromkeys(r.get("data", "in-sample") for r in self.records))
        fig, axes = plt.subplots(
            1, len(datas), figsize=(max(6, len(sites) * 0.5) * len(datas), 3.8), squeeze=False, sharey=True
        )
        for ax, data in zip(axes[0], datas):
            mine = [r for r in self.records if r.get("data", "in-sample") == data]
            n = next((r.get("n_pairs") for r in mine if r.get("n_pairs")), None)
            for est in dict.fromkeys(r["estimator"] for r in mine):
                vals = [
                    next((r[metric] for r in mine if r["site"] == s and r["estimator"] == est), None) for s in sites
                ]
                ax.plot(range(len(sites)), vals, marker="o", label=est)
            ax.set_xticks(range(len(sites)))
            ax.set_xticklabels(sites, rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{data}" + (f" ({n} pairs)" if n else ""), fontsize=9)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel(f"{metric}(T(source), target)")
        head = "What each map leaves unmatched between transported source and target ('none': untouched source)"
        fig.suptitle(f"{title}\n{head}" if title else head, fontsize=9)
        save_figure_atomic(fig, path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path


def moment_mismatch(
    src,
    tgt,
    sites: Sequence[str] | None = None,
    estimators: Sequence[str] = ("mean_act", "gaussian_ot", "linear_act", "bures_ot"),
    held_out: tuple | None = None,
) -> MomentReport:
    """`src` / `tgt`: Activations (or dicts site -> [n, d]) the maps are fitted on. One record per (site,
    estimator), plus estimator 'none' for the untouched source, measured on the fitting data ("in-sample")
    and, when `held_out=(src_h, tgt_h)` is given, on those unseen pairs with the same fitted maps ("held-out")."""
    from interventions import fit_map
    from mdm_lens.collect import Activations

    sites = list(sites or (src.sites if isinstance(src, Activations) else src))
    if not sites:
        raise ValueError("no sites to compare")
    rep = MomentReport()
    for s in sites:
        A, B = src[s].double(), tgt[s].double()
        maps = {est: fit_map(est, A, B, site=s) for est in estimators}
        sets = [("in-sample", A, B)]
        if held_out is not None:
            sets.append(("held-out", held_out[0][s].double(), held_out[1][s].double()))
        for data, X, Y in sets:
            base = {"data": data, "site": s, "n_pairs": int(X.shape[0])}
            rep.records.append({**base, "estimator": "none", **mismatch(X, Y)})
            for est, T in maps.items():
                rep.records.append({**base, "estimator": est, **mismatch(T(X), Y)})
    return rep
