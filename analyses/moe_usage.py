"""Which experts fire where and when: expert usage per denoising step and per token scope, on MoE models.

A masked diffusion model routes every position at every step, masked or not, so an MoE dLLM (LLaDA2.x, LLaDA-MoE)
has a question an autoregressive MoE never had: do the still-masked positions use other experts than the decoded
ones and the prompt, and does routing drift as the canvas fills in? `collect_expert_usage` answers it from the
chosen ids (`blocks.{l}.mlp.hook_expert_indices`) during `model.generate`, counted inside the hook (no
per-position Python, nothing kept but `[scope, layer, step, expert]` counts), and returns an `ExpertUsage`:

    usage = collect_expert_usage(model, prompts, gen_length=64, steps=64, block_length=32)
    usage.share()             # [scope, layer, step, expert]: fraction of the scope's selections per expert
    usage.save("out/")        # moe_usage.json + moe_usage.csv, sample sizes included
    usage.plot("out/moe_usage.png")   # step x expert heatmap, one panel per scope

Scopes are the package's token scopes (`mdm_lens.context.SCOPES`: prompt, masked, response, ...) plus
`decoded`: response positions already unmasked (`response` and not `masked`), the complement of `masked` that
the question needs. Positions are the generation rows only (classifier-free guidance's extra rows are skipped);
under a KV-cached sampler the hooks see, and count, the computed columns only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int

from mdm_lens.context import SCOPES
from mdm_lens.hooked import HookedMDM
from mdm_lens.safefile import save_figure_atomic
from mdm_lens.sites import get_act_name

from .records import write_csv, write_json

USAGE_SCOPES = (*SCOPES, "decoded")
DEFAULT_SCOPES = ("prompt", "masked", "decoded")


@dataclass
class ExpertUsage:
    """`counts[scope, layer, step, expert]`: how often the expert was among a position's top-k choices;
    `positions[scope, layer, step]`: positions of the scope routed at that step (the sample size; each makes
    `top_k` selections, so `counts.sum(-1) == positions * top_k`)."""

    scopes: list[str]
    layers: list[int]
    n_experts: int
    top_k: int
    counts: Int[torch.Tensor, "scope layer step expert"]
    positions: Int[torch.Tensor, "scope layer step"]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.counts.shape[2])

    def share(self) -> torch.Tensor:
        """Fraction of the scope's selections that went to each expert, `[scope, layer, step, expert]` (float64;
        NaN where the scope had no position at that step, e.g. `masked` after the last step)."""
        sel = (self.positions * self.top_k).to(torch.float64)[..., None]
        return torch.where(sel > 0, self.counts.to(torch.float64) / sel.clamp(min=1), torch.nan)

    def records(self) -> list[dict[str, Any]]:
        """One record per (scope, layer, step, expert) with count, positions (sample size) and share."""
        share = self.share()
        out = []
        for si, scope in enumerate(self.scopes):
            for li, layer in enumerate(self.layers):
                for step in range(self.num_steps):
                    n = int(self.positions[si, li, step])
                    for e in range(self.n_experts):
                        s = float(share[si, li, step, e])
                        out.append(
                            {
                                "scope": scope,
                                "layer": layer,
                                "step": step,
                                "expert": e,
                                "count": int(self.counts[si, li, step, e]),
                                "positions": n,
                                "share": None if s != s else s,  # NaN (no positions) as JSON null
                            }
                        )
        return out

    def save(self, folder: str | os.PathLike, name: str = "moe_usage") -> dict[str, str]:
        """`name.json` (header: scopes, layers, sizes, settings; records) and `name.csv` (records), atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        recs = self.records()
        header = {"scopes": self.scopes, "layers": self.layers, "n_experts": self.n_experts, "top_k": self.top_k}
        paths = {"json": str(folder / f"{name}.json"), "csv": str(folder / f"{name}.csv")}
        write_json(paths["json"], {**header, "num_steps": self.num_steps, "meta": self.meta, "records": recs})
        write_csv(paths["csv"], recs)
        return paths

    def plot(self, path: str | os.PathLike, layer: int | None = None) -> str:
        """Heatmap of step x expert usage share, one panel per scope, for `layer` (default: pooled over the
        collected layers: summed counts over summed selections). Each panel's title gives its sample size."""
        import matplotlib.pyplot as plt

        from . import plotting  # noqa: F401  (Agg backend)

        if layer is None:
            counts, positions, where = self.counts.sum(1), self.positions.sum(1), f"layers {self.layers} pooled"
        else:
            if layer not in self.layers:
                raise ValueError(f"layer {layer} was not collected; plot one of {self.layers} or None (pooled)")
            li = self.layers.index(layer)
            counts, positions, where = self.counts[:, li], self.positions[:, li], f"layer {layer}"
        sel = (positions * self.top_k).to(torch.float64)[..., None]
        share = torch.where(sel > 0, counts / sel.clamp(min=1), torch.nan).numpy()
        vmax = float(torch.nan_to_num(torch.as_tensor(share), nan=0.0).max()) or 1.0
        n = len(self.scopes)
        fig, axes = plt.subplots(1, n, figsize=(2.2 + 2.6 * n, 0.9 + 0.22 * self.num_steps), squeeze=False)
        for i, scope in enumerate(self.scopes):
            ax = axes[0][i]
            im = ax.imshow(share[i], aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{scope} (n={int(positions[i].sum())} position-steps)", fontsize=8)
            ax.set_xlabel("expert")
            ax.set_xticks(range(self.n_experts), [str(e) for e in range(self.n_experts)], fontsize=6)
            if i == 0:
                ax.set_ylabel("denoising step")
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="share of the scope's top-k selections")
        fig.suptitle(f"expert usage per step ({where}); blank: no position of that scope", fontsize=9)
        save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return str(path)


def moe_layers(model: HookedMDM) -> list[int]:
    """The layers with routed experts (those carrying `hook_expert_indices`)."""
    return sorted(s.layer for s in model.sites.values() if s.role == "expert_indices" and s.layer is not None)


def _check(model: HookedMDM, layers: Sequence[int] | None, scopes: Sequence[str]) -> tuple[list[int], list[str]]:
    have = moe_layers(model)
    if not have:
        raise ValueError(
            f"the {model.spec.name} family has no mixture-of-experts layers (no hook_expert_indices site); "
            "expert usage needs an MoE model (llada2, lladamoe)"
        )
    layers = have if layers is None else [int(x) for x in layers]
    bad = [x for x in layers if x not in have]
    if bad or not layers:
        raise ValueError(f"layers {bad or layers} have no routed experts; MoE layers of this model: {have}")
    scopes = list(scopes)
    wrong = [s for s in scopes if s not in USAGE_SCOPES]
    if wrong or not scopes:
        raise ValueError(f"unknown scopes {wrong or scopes}; use some of {USAGE_SCOPES}")
    return layers, scopes


def _scope_masks(ctx: Any, scopes: list[str], rows: int, device: torch.device) -> torch.Tensor:
    """`[scope, rows, pos]` bool masks of the generation rows."""
    out = []
    for s in scopes:
        if s == "decoded":
            m = ctx.scope_mask("response", device) & ~ctx.scope_mask("masked", device)
        else:
            m = ctx.scope_mask(s, device)
        out.append(m[:rows])
    return torch.stack(out)


def collect_expert_usage(
    model: HookedMDM,
    prompts: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    seed: int | None = 0,
    **generate_kwargs: Any,
) -> ExpertUsage:
    """Generate `prompts` (`model.generate`, its family's sampler; `generate_kwargs` pass through) and count,
    at every denoising step, which experts each scope's positions chose on each MoE layer. Options are checked
    before the first forward."""
    layers, scopes = _check(model, layers, scopes)
    n_exp = int(model.site(get_act_name("router_logits", layers[0])).shape[-1])
    top_k = int(model.site(get_act_name("expert_indices", layers[0])).shape[-1])
    per_step: dict[int, list[torch.Tensor]] = {}  # step -> [counts [scope, layer, expert], positions [scope, layer]]

    def hook_for(li: int):
        def count(idx: torch.Tensor, ctx: Any) -> None:
            if ctx.step is None:  # a forward outside the sampler (none in generate; kept for safety)
                return
            rows = ctx.main_rows
            masks = _scope_masks(ctx, scopes, rows, idx.device)  # [s, b, p]
            hits = idx[:rows, :, :, None] == torch.arange(n_exp, device=idx.device)  # [b, p, k, e]
            counts = (masks[:, :, :, None, None] & hits[None]).sum(dim=(1, 2, 3))  # [s, e]
            acc = per_step.get(ctx.step)
            if acc is None:
                z = torch.zeros(len(scopes), len(layers), dtype=torch.int64, device=idx.device)
                acc = per_step[ctx.step] = [z[..., None].repeat(1, 1, n_exp), z]
            acc[0][:, li] += counts
            acc[1][:, li] += masks.sum(dim=(1, 2))

        return count

    hooks = {get_act_name("expert_indices", layer): hook_for(i) for i, layer in enumerate(layers)}
    with model.hooks(hooks):
        model.generate(list(prompts), seed=seed, **generate_kwargs)
    n_steps = max(per_step) + 1 if per_step else 0
    counts = torch.zeros(len(scopes), len(layers), n_steps, n_exp, dtype=torch.int64)
    positions = torch.zeros(len(scopes), len(layers), n_steps, dtype=torch.int64)
    for step, (c, p) in per_step.items():
        counts[:, :, step], positions[:, :, step] = c.cpu(), p.cpu()
    meta = {"family": model.spec.name, "n_prompts": len(prompts), "seed": seed, "generate": generate_kwargs}
    return ExpertUsage(scopes, layers, n_exp, top_k, counts, positions, meta)
