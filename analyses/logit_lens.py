"""A logit lens across the denoising loop: what each layer already "knows" about the token a still-masked
position will finally receive, step by step.

For a masked diffusion LM the interesting question is not only *which layer* first predicts the answer (TL's
logit lens on one forward) but *which step*: a position is decoded at some step s (the decode trace), yet a
layer's residual may rank that token top-1 many steps earlier. So:

1. generate once with the decode trace and the per-step canvas history (`generate(return_history=True)`);
2. replay the chosen steps' inputs (step s reads the canvas after step s-1; the forward is deterministic, so the
   activations are the sampler's own; with CFG this is the conditional half) through `run_with_cache`, and read
   each chosen layer's `resid_post` through the final norm and the unembedding exactly as TransformerLens'
   logit lens does (`ActivationCache.accumulated_resid(apply_ln=True)`: the real final RMSNorm recomputed on
   each layer's stream, weight included, then `W_U`);
3. at every response position still masked in that step's input, compare with the finally decoded token.

Replaying instead of caching during generation keeps memory at one step's residuals and lets the lens know the
final tokens. Dream's logits are shifted (the state at j-1 predicts token j): the lens reads position j-1 for
token j, as the sampler does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from mdm_lens.safefile import save_figure_atomic

POSITIONS = ("all", "text")  # every response position, or only up to the response's first stop token


@dataclass
class LensResult:
    """Tidy records of one lens run.

    `records`: one per (prompt, step, layer, still-masked response position): the finally decoded token, the
    step that decoded it, the layer's top-1 token, whether it is the final one, p(final token) and its rank.
    `first_top1`: one per (prompt, position, layer): the first chosen step at which the layer ranks the final
    token top-1 while the position is still masked (None if never), with that probability and the lead
    (decode step minus that step). `grid`: per (layer, step) the count, top-1 rate and mean p(final)."""

    records: list[dict]
    first_top1: list[dict]
    grid: list[dict]
    steps: list[int]
    layers: list[int]
    settings: dict[str, Any]
    model_name: str
    n_prompts: int
    texts: list[str] = field(default_factory=list)

    def matrix(self, value: str = "top1_rate") -> torch.Tensor:
        """`[layer, step]` of a grid column (NaN where no position was still masked)."""
        m = torch.full((len(self.layers), len(self.steps)), float("nan"))
        li, si = {l: i for i, l in enumerate(self.layers)}, {s: i for i, s in enumerate(self.steps)}
        for g in self.grid:
            if g["n_masked"]:
                m[li[g["layer"]], si[g["step"]]] = g[value]
        return m

    def plot(self, path: str | os.PathLike, title: str | None = None) -> str:
        """Two layer × step heatmaps: how often the layer's top-1 is the finally decoded token, and the mean
        probability it gives that token, over the positions still masked at that step."""
        from .plotting import plt

        title = title or (
            f"{self.model_name} · logit lens per denoising step · {self.n_prompts} prompt(s) · "
            + ", ".join(f"{k}={v}" for k, v in self.settings.items())
        )
        width = min(16.0, max(9.0, 0.25 * len(self.steps) * 2 + 4))
        fig, axes = plt.subplots(1, 2, figsize=(width, 2.6 + 0.5 * len(self.layers)), constrained_layout=True)
        panels = (
            ("top1_rate", "top-1 = final token (fraction of still-masked positions)", "fraction"),
            ("mean_p_final", "mean p(final token) at still-masked positions", "probability"),
        )
        for ax, (col, sub, label) in zip(axes, panels):
            im = ax.imshow(
                self.matrix(col).numpy(),
                aspect="auto",
                origin="lower",
                vmin=0.0,
                vmax=1.0,
                cmap="viridis",
                interpolation="nearest",
            )
            ax.set_xticks(range(len(self.steps)), [str(s) for s in self.steps], fontsize=7)
            ax.set_yticks(range(len(self.layers)), [f"L{l} resid_post" for l in self.layers], fontsize=8)
            ax.set_xlabel("denoising step (input canvas of that step)")
            ax.set_ylabel("layer")
            ax.set_title(sub, fontsize=9)
            fig.colorbar(im, ax=ax, label=label, shrink=0.9)
        fig.suptitle(title, fontsize=9, wrap=True)
        save_figure_atomic(fig, path, dpi=130)
        plt.close(fig)
        return str(path)


def _check_choice(kind: str, chosen: Sequence[int] | None, n: int) -> list[int]:
    if chosen is None:
        return list(range(n))
    chosen = sorted(dict.fromkeys(int(c) for c in chosen))
    bad = [c for c in chosen if not 0 <= c < n]
    if bad or not chosen:
        raise ValueError(
            f"{kind} {bad or chosen} out of range: this run has {kind} 0..{n - 1}; pick some of them (or None for all)"
        )
    return chosen


def _in_text(model, final: torch.Tensor) -> torch.Tensor:
    """[b, gen] True up to and including each row's first stop token (EOS / EOT); everywhere without one."""
    from mdm_lens.generation import special_ids

    ids_ = special_ids(model)
    gen = final.shape[1]
    stops = torch.tensor([t for t in (ids_["eos"], ids_["eot"]) if t is not None], dtype=torch.long)
    is_stop = torch.isin(final, stops)
    first_stop = torch.where(
        is_stop.any(1), is_stop.float().argmax(1), torch.full_like(is_stop[:, 0], gen, dtype=torch.long)
    )
    return torch.arange(gen)[None, :] <= first_stop[:, None]


@torch.no_grad()
def _read_layer(
    logits: torch.Tensor,
    rows: torch.Tensor,
    pos: torch.Tensor,
    final: torch.Tensor,
    dec: torch.Tensor,
    in_text: torch.Tensor,
    s: int,
    l: int,
    records: list[dict],
) -> tuple[int, float, float]:
    """One (layer, step) cell from the lens logits [b, gen, V] at the still-masked (rows, pos): its records
    appended to `records`; returns (n masked, top-1 rate, mean p of the final token)."""
    tgt = final[rows, pos]
    lg = logits[rows, pos]  # [n, V]
    p_final = lg.softmax(-1).gather(-1, tgt[:, None].to(lg.device)).squeeze(-1).cpu()
    top1 = lg.argmax(-1).cpu()
    rank = (lg > lg.gather(-1, tgt[:, None].to(lg.device))).sum(-1).cpu()
    is_top1 = top1 == tgt
    for k in range(len(tgt)):
        r, g = int(rows[k]), int(pos[k])
        records.append(
            {
                "prompt": r,
                "step": s,
                "layer": l,
                "position": g,
                "final_token": int(tgt[k]),
                "decode_step": int(dec[r, g]),
                "top1_token": int(top1[k]),
                "is_top1": bool(is_top1[k]),
                "p_final": float(p_final[k]),
                "rank_final": int(rank[k]),
                "in_text": bool(in_text[r, g]),
            }
        )
    if not len(tgt):
        return 0, float("nan"), float("nan")
    return len(tgt), float(is_top1.float().mean()), float(p_final.mean())


def _first_top1(records: list[dict]) -> list[dict]:
    """Per (prompt, position, layer): the first step whose top-1 is the final token, its p, and the lead over
    the step that decoded it (records are in step order)."""
    first: dict[tuple[int, int, int], dict] = {}
    for rec in records:
        key = (rec["prompt"], rec["position"], rec["layer"])
        row = first.setdefault(
            key,
            {
                "prompt": rec["prompt"],
                "position": rec["position"],
                "layer": rec["layer"],
                "final_token": rec["final_token"],
                "decode_step": rec["decode_step"],
                "first_top1_step": None,
                "p_at_first_top1": None,
                "lead_steps": None,
            },
        )
        if rec["is_top1"] and row["first_top1_step"] is None:
            row.update(
                first_top1_step=rec["step"], p_at_first_top1=rec["p_final"], lead_steps=rec["decode_step"] - rec["step"]
            )
    return sorted(first.values(), key=lambda r: (r["prompt"], r["position"], r["layer"]))


@torch.no_grad()
def logit_lens(
    model,
    prompts,
    *,
    at_steps: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    positions: str = "all",
    seed: int = 0,
    chat: bool = True,
    progress: bool = False,
    **sampler_kwargs,
) -> LensResult:
    """Generate `prompts` once, then read the chosen layers' residual streams at the chosen steps through the
    final norm and unembedding (`at_steps` / `layers` None: all; `steps` is the sampler's own step count). `positions="text"` keeps only response positions up
    to the first stop token (EOS / EOT): the fill after it is an easy, repeated token that dominates averages
    on short answers. Sampler options as in `model.generate`."""
    from mdm_lens.step_replay import check_full_forward_replay

    if positions not in POSITIONS:
        raise ValueError(f"positions={positions!r}; use one of {POSITIONS}")
    if sampler_kwargs.get("sampler", "reference") != "reference":
        raise ValueError(
            f"logit_lens(sampler={sampler_kwargs['sampler']!r}) is refused: the lens replays each step's "
            "canvas through a full forward, which equals the reference sampler's own activations, but "
            "the KV-cached fast sampler computes from cached keys/values (stale for the prefix/dual "
            "cache), so the replay would not show its activations (max |p_lens - p_sampler| up to 0.35 "
            "measured). Use sampler='reference', or record the fast sampler's own activations with "
            "model.cache_steps([...]) during model.generate(..., sampler='fast')"
        )
    # every family whose sampler's forwards a full forward replays (FamilySpec.step_forward_refusal)
    shift = check_full_forward_replay(
        model,
        model.sampler_settings(**sampler_kwargs),
        "logit_lens over denoising steps (reads still-masked positions)",
    )
    sampler_kwargs.pop("return_history", None)
    out = model.generate(prompts, seed=seed, chat=chat, return_history=True, **sampler_kwargs)
    n_steps, n_layers = out.history.shape[0], model.n_layers
    steps, layers = _check_choice("steps", at_steps, n_steps), _check_choice("layers", layers, n_layers)
    mask_id, plen = model.mask_id, out.prompt_length
    gen = out.tokens.shape[1]
    final, dec = out.tokens, out.decode_step  # [b, gen]
    in_text = _in_text(model, final)  # [b, gen]
    attn = None
    if out.attention_mask is not None:
        attn = torch.cat([out.attention_mask, torch.ones_like(final)], 1).to(model.input_device)
    names = model.site_names(["resid_pre"]) + model.site_names(["resid_post"], [n_layers - 1])
    W_U = model.W_U.detach().float()
    records, cells = [], {}
    it = steps
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(steps, desc="logit lens", unit="step", leave=False)
    for s in it:
        canvas = torch.full_like(final, mask_id) if s == 0 else out.history[s - 1]
        ids = torch.cat([out.sequences[:, :plen], canvas], 1).to(model.input_device)
        _, cache = model.run_with_cache(ids, names_filter=names, attention_mask=attn, prompt_length=plen)
        # TL's logit lens: component l+1 of accumulated_resid is resid_post of layer l (final_post for the last)
        stack = cache.accumulated_resid(apply_ln=True, pos_slice=slice(plen - shift, plen - shift + gen))
        still = (canvas == mask_id) & (dec >= 0) & (in_text if positions == "text" else True)
        rows, pos = still.nonzero(as_tuple=True)
        for l in layers:
            cells[(l, s)] = _read_layer(stack[l + 1].float() @ W_U, rows, pos, final, dec, in_text, s, l, records)
    grid = [
        {
            "layer": l,
            "step": s,
            "n_masked": cells[(l, s)][0],
            "top1_rate": cells[(l, s)][1],
            "mean_p_final": cells[(l, s)][2],
        }
        for l in layers
        for s in steps
    ]
    first = _first_top1(records)
    settings = {
        k: v
        for k, v in model.sampler_settings(**sampler_kwargs).items()
        if k in ("steps", "gen_length", "max_new_tokens", "block_length", "temperature", "remasking", "alg")
    }
    return LensResult(
        records=records,
        first_top1=first,
        grid=grid,
        steps=steps,
        layers=layers,
        settings={**settings, "seed": seed, "positions": positions},
        model_name=str(model.name_or_path or model.spec.name),
        n_prompts=final.shape[0],
        texts=list(out.texts),
    )


def layer_summary(result: LensResult) -> list[dict]:
    """Per layer: how many decoded positions it ever ranked top-1 before they were decoded, the mean first step,
    lead and probability at that first step."""
    rows = []
    for l in result.layers:
        mine = [r for r in result.first_top1 if r["layer"] == l]
        hit = [r for r in mine if r["first_top1_step"] is not None]
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        rows.append(
            {
                "layer": l,
                "positions": len(mine),
                "ever_top1": len(hit),
                "mean_first_top1_step": mean([r["first_top1_step"] for r in hit]),
                "mean_lead_steps": mean([r["lead_steps"] for r in hit]),
                "mean_p_at_first_top1": mean([r["p_at_first_top1"] for r in hit]),
            }
        )
    return rows
