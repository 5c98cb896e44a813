"""What a steering plan does at every denoising step: activation change, KL on still-masked positions,
share of newly unmasked tokens that differ, and which positions flip first."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mdm_lens.safefile import save_figure_atomic

from .plotting import plt


@dataclass
class StepEffects:
    """Per-step records plus `[step, position]` unmask-order maps of both runs."""

    records: list[dict] = field(default_factory=list)
    unmask_step_base: torch.Tensor | None = None  # [batch, gen] step at which each position was decoded
    unmask_step_steer: torch.Tensor | None = None
    differs: torch.Tensor | None = None  # [batch, gen] final tokens differ

    def flip_map(self) -> torch.Tensor:
        """`[position, step]`: share of prompts whose token at that position, decoded at that step of the
        steered run, differs from the unsteered run — which positions flip, and how early."""
        n_steps = len(self.records)
        when, diff = self.unmask_step_steer, self.differs
        out = torch.zeros(when.shape[1], n_steps)
        for s in range(n_steps):
            out[:, s] = ((when == s) & diff).float().mean(0)
        return out

    def plot(self, path: str, title: str | None = None) -> str:
        """`title`: what the figure shows (model, plan, constraint), drawn above the panels."""
        steps = [r["step"] for r in self.records]
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
        sites = sorted({k[len("delta_norm:") :] for r in self.records for k in r if k.startswith("delta_norm:")})
        for s in sites:
            axes[0].plot(steps, [r.get(f"delta_norm:{s}", 0.0) for r in self.records], label=s)
        axes[0].set_title("‖T(h) − h‖ per position")
        if sites:  # below the panel, never over the lines it names
            axes[0].legend(
                fontsize=6,
                loc="upper left",
                bbox_to_anchor=(0, -0.3),
                frameon=False,
                ncol=max(1, min(2, len(sites) // 4 + 1)),
            )
        axes[1].plot(steps, [r["kl_masked"] for r in self.records])
        axes[1].set_title("KL(steered ‖ unsteered), masked positions")
        axes[2].plot(steps, [r["differ_share"] for r in self.records])
        axes[2].set_title("share of newly unmasked tokens that differ")
        for ax in axes[:3]:
            ax.set_xlabel("denoising step")
        if self.unmask_step_steer is not None:
            im = axes[3].imshow(self.flip_map().numpy(), aspect="auto", cmap="viridis", origin="lower")
            axes[3].set_title("differing tokens: decode step × position", fontsize=9)
            axes[3].set_xlabel("denoising step at which it was decoded")
            axes[3].set_ylabel("response position")
            fig.colorbar(im, ax=axes[3], label="share of prompts")
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=110)
        plt.close(fig)
        return path


def _run(model, prompts, plan, seed, sampler_kwargs, sites):
    logps, inputs, deltas = {}, {}, {}
    pre: dict = {}

    def spy_logits(act, ctx):
        rows = act[: ctx.main_rows].float()
        ids = ctx.input_ids[: ctx.main_rows].to("cpu", copy=True)  # the sampler edits x in place
        start, stop = ctx.computed
        if ctx.cached:  # a KV-cached forward computes [start, stop); the other columns are unchanged
            canvas = inputs[max(inputs)].clone()  # since the block's full forward (a step before)
            canvas[:, start:stop] = ids
            ids = canvas
        logps[ctx.step] = (start, F.log_softmax(rows, -1).cpu())
        inputs[ctx.step] = ids

    def before(act, ctx):
        pre[ctx.site] = act.detach().clone()

    def after(act, ctx):
        d = (act.float() - pre[ctx.site].float())[: ctx.main_rows]
        deltas.setdefault(ctx.step, {})[ctx.site] = float(d.norm(dim=-1).mean())

    with model.hooks({s: before for s in sites}):
        with model.steer(plan) if plan is not None else nullcontext():
            with model.hooks({"hook_logits": spy_logits, **{s: after for s in sites}}):
                out = model.generate(prompts, seed=seed, **sampler_kwargs)
    return out, logps, inputs, deltas


def _unmask_steps(inputs: dict, plen: int, mask_id: int, final: torch.Tensor) -> torch.Tensor:
    steps = sorted(inputs)
    gen = final.shape[1]
    when = torch.full(final.shape, len(steps), dtype=torch.long)
    for s in reversed(steps):
        still = inputs[s][:, plen:] == mask_id
        when = torch.where(still, when, torch.minimum(when, torch.full_like(when, s)))
    # a position masked at the last forward was decoded by that step
    return when.clamp_max(len(steps) - 1)[:, :gen]


def step_effects(model, prompts, plan, *, seed: int = 0, **sampler_kwargs) -> StepEffects:
    """Same prompts and seed, unsteered vs steered; one record per denoising step."""
    from mdm_lens.no_mask import require_mask_token

    require_mask_token(model, "step_effects (per-step unmasking order)")
    sites = list(getattr(plan, "sites", []))
    base, lp_b, in_b, _ = _run(model, prompts, None, seed, sampler_kwargs, [])
    steer, lp_s, in_s, deltas = _run(model, prompts, plan, seed, sampler_kwargs, sites)
    plen = base.prompt_length
    when_b = _unmask_steps(in_b, plen, model.mask_id, base.tokens)
    when_s = _unmask_steps(in_s, plen, model.mask_id, steer.tokens)
    out = StepEffects(unmask_step_base=when_b, unmask_step_steer=when_s, differs=base.tokens != steer.tokens)
    for s in sorted(lp_s):
        masked = (in_s[s] == model.mask_id) & (in_b[s] == model.mask_id)
        masked[:, :plen] = False
        (c_s, lps), (c_b, lpb) = lp_s[s], lp_b.get(s, (0, lp_s[s][1][:, :0]))
        lo, hi = max(c_s, c_b), min(c_s + lps.shape[1], c_b + lpb.shape[1])  # columns both forwards computed
        masked[:, :lo] = False
        masked[:, hi:] = False
        if masked.any():
            p_s, p_b = lps[:, lo - c_s : hi - c_s][masked[:, lo:hi]], lpb[:, lo - c_b : hi - c_b][masked[:, lo:hi]]
            kl = float((p_s.exp() * (p_s - p_b)).sum(-1).mean())
        else:
            kl = 0.0
        new_s = when_s == s
        differ = float((base.tokens != steer.tokens)[new_s].float().mean()) if new_s.any() else 0.0
        t = float((in_s[s][:, plen:] == model.mask_id).float().mean())
        rec = {"step": s, "t": t, "kl_masked": max(kl, 0.0), "differ_share": differ}
        rec.update({f"delta_norm:{k}": v for k, v in deltas.get(s, {}).items()})
        out.records.append(rec)
    return out
