"""SAE evaluation by mask ratio (t-masked canvases, as DLM-Scope reports it) and by denoising step (generations).

Per mask ratio r: the eval pairs' responses (EOS-padded canvases, `store.response_canvas`) masked at r; on the
positions of the SAE's variant: MSE, explained variance and L0; over all ratios: dead (never fire) and dense
(fire on > `dense_above` of tokens) latents; and the masked-token cross-entropy of the model (clean), with the
SAE spliced in *without* the error term, and with the site zero-ablated, both on the variant's positions
(`scope`), so `loss recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean)` (1: the SAE loses nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from interventions import Plan, restrict
from interventions.sae import SAE
from mdm_lens.hooked import HookedMDM

from .store import MASK_RATIOS, _select, check_variant, mask_at, response_canvas
from .train import explained_variance
from mdm_lens.safefile import save_figure_atomic


def _canvases(model: HookedMDM, pairs: Sequence, gen_length: int, chat: bool):
    from mdm_lens.generation import special_ids
    from mdm_lens.likelihood import encode_pair
    from mdm_lens.prompts import left_pad

    enc = [encode_pair(model, p, r, chat=chat) for p, r in pairs]
    ids, attn = left_pad([p.tolist() for p, _ in enc], special_ids(model)["pad"])
    canvas = torch.cat([ids, torch.stack([response_canvas(model, r, gen_length) for _, r in enc])], 1)
    if attn is not None:
        attn = torch.cat([attn, torch.ones(len(enc), gen_length, dtype=attn.dtype)], 1)
    return canvas, attn, ids.shape[1]


def _masked_ce(logits: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> float:
    return float(F.cross_entropy(logits[masked].float(), target[masked]))


@dataclass
class SAEEval:
    """Records by mask ratio (or step) and the latents' firing statistics."""

    records: list[dict]
    dead_fraction: float
    dense_fraction: float
    meta: dict = field(default_factory=dict)

    def table_markdown(self) -> str:
        keys = [
            k
            for k in (
                "mask_ratio",
                "step",
                "explained_variance",
                "mse",
                "l0",
                "ce_clean",
                "ce_sae",
                "ce_zero",
                "loss_recovered",
            )
            if k in self.records[0]
        ]
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in self.records:
            lines.append(
                "| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |"
            )
        lines.append(f"\ndead latents {self.dead_fraction:.3f}, dense latents {self.dense_fraction:.3f}")
        return "\n".join(lines)

    def plot(self, path: str) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x_key = "mask_ratio" if "mask_ratio" in self.records[0] else "step"
        xs = [r[x_key] for r in self.records]
        panels = [("explained_variance", "explained variance"), ("l0", "L0 (active latents per token)")]
        if "loss_recovered" in self.records[0]:
            panels.append(("ce", "masked-token cross-entropy (nats)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
        for ax, (key, title) in zip(axes, panels):
            if key == "ce":
                for k, lab in (("ce_clean", "clean"), ("ce_sae", "SAE spliced"), ("ce_zero", "site zeroed")):
                    ax.plot(xs, [r[k] for r in self.records], marker="o", label=lab)
                ax.set_yscale("log")
                ax.legend(fontsize=8)
            else:
                ax.plot(xs, [r[key] for r in self.records], marker="o")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(x_key.replace("_", " "))
            ax.grid(alpha=0.3)
        name = self.meta.get("name", "SAE")
        fig.suptitle(f"{name}: dead {self.dead_fraction:.1%}, dense {self.dense_fraction:.1%}", fontsize=10)
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=120)
        plt.close(fig)
        return path

    def to_json(self) -> dict:
        return {
            "records": self.records,
            "dead_fraction": self.dead_fraction,
            "dense_fraction": self.dense_fraction,
            "meta": self.meta,
        }


def evaluate_by_mask_ratio(
    model: HookedMDM,
    sae: SAE,
    site: str,
    pairs: Sequence,
    *,
    mask_ratios: Sequence[float] = MASK_RATIOS,
    variant: str = "mask",
    gen_length: int | None = None,
    chat: bool = True,
    seed: int = 0,
    dense_above: float = 0.1,
    batch_size: int = 16,
) -> SAEEval:
    """Evaluate `sae` at `site` on `pairs` (prompt, response) masked at each ratio (module docstring)."""
    check_variant(variant)
    sae.check(model, site)
    gen_length = int(gen_length or model.default_gen_length)
    scope = {"mask": "masked", "unmask": "response", "response": "response"}[variant]
    splice = Plan({site: restrict(sae.splice(error_term=False), scope=scope)})
    zero = Plan({site: restrict(_ZeroMap(sae.d_in), scope=scope)})
    canvas, attn, plen = _canvases(model, pairs, gen_length, chat)
    g = torch.Generator().manual_seed(seed)
    fired = torch.zeros(sae.d_sae)
    n_tok, records = 0, []
    dev = model.input_device
    for r in mask_ratios:
        sums = {"se": 0.0, "l0": 0.0, "n": 0, "ce_clean": 0.0, "ce_sae": 0.0, "ce_zero": 0.0, "n_ce": 0}
        xs, recs = [], []
        for i in range(0, canvas.shape[0], batch_size):
            rows = canvas[i : i + batch_size]
            noisy = mask_at(rows, plen, torch.full((rows.shape[0],), float(r)), model.mask_id, g).to(dev)
            am = None if attn is None else attn[i : i + batch_size].to(dev)
            masked = noisy == model.mask_id
            target = rows.to(dev)
            got: list[torch.Tensor] = []

            def grab(act, ctx, got=got):
                got.append(act[_select(ctx, variant)].detach().float().cpu())

            with torch.no_grad():
                with model.hooks({site: grab}):
                    clean = model(noisy, attention_mask=am, prompt_length=plen)
                with model.steer(splice):
                    spliced = model(noisy, attention_mask=am, prompt_length=plen)
                with model.steer(zero):
                    zeroed = model(noisy, attention_mask=am, prompt_length=plen)
                x = torch.cat(got)
                f = sae.encode(x)
                xs.append(x)
                recs.append(sae.decode(f).float())
                fired += (f != 0).sum(0).float()
                n_tok += x.shape[0]
            k = int(masked.sum())
            for key, lg in (("ce_clean", clean), ("ce_sae", spliced), ("ce_zero", zeroed)):
                sums[key] += _masked_ce(lg, target, masked) * k
            sums["n_ce"] += k
        x, rec = torch.cat(xs), torch.cat(recs)
        f_l0 = float((sae.encode(x) != 0).sum(-1).float().mean())
        ce = {key: sums[key] / sums["n_ce"] for key in ("ce_clean", "ce_sae", "ce_zero")}
        gap = ce["ce_zero"] - ce["ce_clean"]
        records.append(
            {
                "mask_ratio": float(r),
                "n_activations": int(x.shape[0]),
                "mse": float((x - rec).pow(2).mean()),
                "explained_variance": explained_variance(x, rec),
                "l0": f_l0,
                **ce,
                "loss_recovered": (ce["ce_zero"] - ce["ce_sae"]) / gap if gap > 0 else float("nan"),
            }
        )
    freq = fired / max(n_tok, 1)
    return SAEEval(
        records,
        float((freq == 0).float().mean()),
        float((freq > dense_above).float().mean()),
        {
            "site": site,
            "variant": variant,
            "scope": scope,
            "n_pairs": len(pairs),
            "seed": seed,
            "gen_length": gen_length,
            "name": f"SAE {sae.architecture} d_sae={sae.d_sae} @ {site}",
        },
    )


def evaluate_by_step(
    model: HookedMDM,
    sae: SAE,
    site: str,
    prompts: Sequence[str],
    *,
    variant: str = "mask",
    seed: int = 0,
    dense_above: float = 0.1,
    **generate_kwargs,
) -> SAEEval:
    """MSE, explained variance and L0 at every denoising step of `model.generate(prompts)`, on the variant's
    positions (a step with none of them, e.g. "mask" at the last step, is left out)."""
    check_variant(variant)
    sae.check(model, site)
    by_step: dict[int, list[torch.Tensor]] = {}

    def grab(act, ctx):
        sel = _select(ctx, variant)[: ctx.main_rows]
        by_step.setdefault(int(ctx.step), []).append(act[: ctx.main_rows][sel].detach().float().cpu())

    with torch.no_grad(), model.hooks({site: grab}):
        model.generate(list(prompts), seed=seed, **generate_kwargs)
    fired, n_tok, records = torch.zeros(sae.d_sae), 0, []
    with torch.no_grad():
        for step in sorted(by_step):
            x = torch.cat(by_step[step])
            if x.shape[0] == 0:
                continue
            f = sae.encode(x)
            rec = sae.decode(f).float()
            fired += (f != 0).sum(0).float()
            n_tok += x.shape[0]
            records.append(
                {
                    "step": step,
                    "n_activations": int(x.shape[0]),
                    "mse": float((x - rec).pow(2).mean()),
                    "explained_variance": explained_variance(x, rec),
                    "l0": float((f != 0).sum(-1).float().mean()),
                }
            )
    freq = fired / max(n_tok, 1)
    return SAEEval(
        records,
        float((freq == 0).float().mean()),
        float((freq > dense_above).float().mean()),
        {
            "site": site,
            "variant": variant,
            "n_prompts": len(prompts),
            "seed": seed,
            "name": f"SAE {sae.architecture} d_sae={sae.d_sae} @ {site}",
        },
    )


class _ZeroMap:
    """Zero-ablation of a site (the baseline of `loss recovered`)."""

    def __init__(self, d: int):
        self.d = d

    def __call__(self, act, ctx=None):
        return torch.zeros_like(act)

    def strength(self, lam: float) -> _ZeroMap:
        return self


__all__ = ["SAEEval", "evaluate_by_mask_ratio", "evaluate_by_step"]
