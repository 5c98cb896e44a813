"""Where and when does tiny-mdm decide to refuse? The causal tools of docs/causal.md on the embedded organism.

    python -m analyses.studies.causal_refusal --out OUT [--pairs 6] [--model tiny-mdm]

1. **Patching map.** Clean = harmful requests (the organism refuses), corrupted = harmless requests of the same
   token length (it complies). The clean run is replayed teacher-forced; at each chosen step the corrupted prompt
   reads the clean run's canvas, and `resid_pre` / `attn_out` / `mlp_out` are patched per (layer, position). Metric:
   over the response positions still masked at that step, the mean log-probability margin of the clean (refusal)
   tokens over the corrupted run's (compliance) tokens, normalised so 0 = corrupted, 1 = clean.
2. **Attribution vs activation patching** at step 0: Pearson correlation over every (role, layer, position).
3. **When it settles.** Directional ablation of the refusal direction (difference in means, `resid_post`) at one
   step alone, per layer -> effect on the final refusal rate; the logit lens's first step on the answer's first
   tokens; the adaptive window (steps with >= half the peak single-step effect) vs always-on ablation: refusal
   rate (effect) and damage (degenerate share, NLL under the unsteered model, harmless requests still answered).
Writes `OUT/*.png` and `OUT/causal_refusal.json`.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from mdm_lens.safefile import save_figure_atomic, write_text_atomic


def matched_pairs(model, n: int, split: str = "test") -> tuple[list[str], list[str]]:
    """Harmful and harmless requests paired by equal chat-templated token length (patching compares positions)."""
    from analyses.studies.organism.behaviours import refusal_prompts
    from mdm_lens.prompts import encode_prompts

    length = {}
    for p in refusal_prompts(True, 60, split) + refusal_prompts(False, 60, split):
        length[p] = encode_prompts([p], model.tokenizer, chat=True, pad_id=0)[0].shape[1]
    harmless = refusal_prompts(False, 60, split)
    bad, good, used = [], [], set()
    for h in refusal_prompts(True, 60, split):
        match = next((g for g in harmless if g not in used and length[g] == length[h]), None)
        if match is not None:
            used.add(match)
            bad.append(h)
            good.append(match)
        if len(bad) == n:
            break
    return bad, good


def margin_metric(run, clean_tokens: torch.Tensor, corrupt_tokens: torch.Tensor, model):
    """metric(logits) at the replayed step: mean over still-masked response positions of log p(clean token) -
    log p(corrupted-run token), the step read from the model's step clock."""
    plen = run.prompt_length

    def metric(logits: torch.Tensor) -> torch.Tensor:
        step = model.step_info.step
        masked = (run.response_before(step) == run.mask_id).to(logits.device)
        lp = logits[:, plen:].float().log_softmax(-1)
        a = lp.gather(-1, clean_tokens[..., None].to(lp.device))[..., 0]
        b = lp.gather(-1, corrupt_tokens[..., None].to(lp.device))[..., 0]
        diff = torch.where(masked & (clean_tokens != corrupt_tokens).to(lp.device), a - b, torch.zeros_like(a))
        return diff.sum() / masked.sum().clamp_min(1)

    return metric


def run_study(
    model,
    out: str,
    n_pairs: int = 6,
    seed: int = 0,
    patch_steps=(0, 6, 12, 18),
    settle_every: int = 2,
    progress: bool = True,
    scope: str = "all",
    settle_layers=None,
    n_val: int = 12,
    n_test: tuple[int, int] = (24, 16),
    mc_num: int = 8,
    roles: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out"),
    parts=("patch", "settle"),
) -> dict:
    """The protocol of the module docstring; `scope` limits the patched positions, `settle_layers` the layers of the
    single-step sweep (None: all), `n_val` its prompts, `n_test` the (harmful, harmless) comparison prompts."""
    from analyses.refusal import RefusalScorer

    os.makedirs(out, exist_ok=True)
    scorer = RefusalScorer()
    report: dict = {}
    if "patch" in parts:
        harmful, harmless = matched_pairs(model, n_pairs)
        clean = model.generate(harmful, seed=seed)
        corrupt = model.generate(harmless, seed=seed)
        report.update(
            pairs=list(zip(harmful, harmless)),
            clean_refusal=sum(scorer.scores(clean.texts)) / n_pairs,
            corrupt_refusal=sum(scorer.scores(corrupt.texts)) / n_pairs,
        )
        _patch_part(model, out, report, clean, corrupt, patch_steps, scope, roles, progress)
    if "settle" in parts:
        _settle_part(model, out, report, scorer, seed, settle_every, settle_layers, n_val, n_test, mc_num, progress)
    path = os.path.join(out, f"causal_refusal_{'_'.join(parts)}.json")
    write_text_atomic(json.dumps(report, indent=1, default=str), path)
    return report


def _patch_part(model, out, report, clean, corrupt, patch_steps, scope, roles, progress) -> None:
    """Steps 1-2 of the module docstring: patching maps per step and attribution agreement at step 0."""
    from analyses import patching as P
    from analyses.attribution import agreement, attribution_patch
    from analyses.replayed import ReplayedRun, at_step

    fns = {
        "resid_pre": P.get_act_patch_resid_pre,
        "attn_out": P.get_act_patch_attn_out,
        "mlp_out": P.get_act_patch_mlp_out,
    }
    run = ReplayedRun.of(model, clean)
    metric = margin_metric(run, clean.tokens, corrupt.tokens, model)
    prompt_c = corrupt.sequences[:, : corrupt.prompt_length]
    # baselines per step: clean canvas with clean / corrupted prompt
    base = {}
    for s in patch_steps:
        with at_step(model, run, s), torch.no_grad():
            mask = None if run.mask() is None else run.mask().to(model.input_device)
            hi = float(metric(model(run.canvas(s).to(model.input_device), attention_mask=mask)))
            lo = float(metric(model(run.canvas(s, prompt_c).to(model.input_device), attention_mask=mask)))
        base[s] = (lo, hi)
    report["metric_baselines"] = {str(s): {"corrupted": lo, "clean": hi} for s, (lo, hi) in base.items()}
    maps = {}
    for role, fn in ((r, fns[r]) for r in roles):
        raw = fn(model, prompt_c, run, metric, steps=list(patch_steps), scope=scope, progress=progress)
        lo = torch.tensor([base[s][0] for s in patch_steps])[:, None, None]
        hi = torch.tensor([base[s][1] for s in patch_steps])[:, None, None]
        maps[role] = (raw - lo) / (hi - lo)
    plen = run.prompt_length
    tok = model.to_str_tokens(clean.sequences[0, :plen])
    labels = [t.replace("\n", "\\n")[:8] for t in tok] + [f"r{i}" for i in range(clean.tokens.shape[1])]
    for role, m in maps.items():
        P.plot_patching(
            m[0],
            os.path.join(out, f"patch_{role}_step0.png"),
            xticklabels=labels,
            title=f"tiny-mdm refusal: patching {role} (harmful -> harmless), step 0, normalised",
        )
        P.plot_patching(
            m[:, :, :plen],
            os.path.join(out, f"patch_{role}_by_step.png"),
            steps=list(patch_steps),
            title=f"{role} patched at prompt positions, per step (normalised)",
        )
    top = []
    for role, m in maps.items():
        for s_i, s in enumerate(patch_steps):
            v = m[s_i].nan_to_num(-1e9)
            flat = int(v.argmax())
            layer, pos = divmod(flat, v.shape[1])
            top.append(
                {
                    "role": role,
                    "step": s,
                    "layer": layer,
                    "pos": pos,
                    "token": labels[pos],
                    "recovered": float(m[s_i, layer, pos]),
                }
            )
    report["patching_top"] = top
    report["patching_step0"] = {r: m[0].tolist() for r, m in maps.items()}
    # attribution vs activation patching at step 0
    agree = {}
    for method in ("ap", "ig"):
        att = attribution_patch(model, None, prompt_c, metric, roles=list(roles), run=run, step=0, method=method, k=5)
        a = torch.cat([att[r].flatten() for r in maps])
        b = torch.cat([(maps[r][0] * (base[0][1] - base[0][0])).flatten() for r in maps])  # un-normalised effect
        a = torch.where(torch.isnan(b), torch.full_like(a, float("nan")), a)  # only the patched sites
        agree[method] = agreement(a, b)
        if method == "ap":
            _scatter(a, b, os.path.join(out, "attribution_vs_activation.png"))
    report["attribution_agreement"] = agree


def _settle_part(model, out, report, scorer, seed, settle_every, settle_layers, n_val, n_test, mc_num, progress):
    """Step 3 of the module docstring: single-step ablation effects, the lens, the adaptive window comparison."""
    from analyses.damage import damage
    from analyses.settle import adaptive_window, lens_settle, single_step_effects
    from analyses.studies.organism.behaviours import refusal_prompts
    from interventions import Plan, fit_map
    from mdm_lens.collect import collect_contrastive

    # when does it settle: directional ablation at one step alone, per layer
    sites = [f"blocks.{l}.hook_resid_post" for l in range(model.n_layers)]
    calib_bad, calib_good = refusal_prompts(True, 48, "train"), refusal_prompts(False, 48, "train")
    src, tgt = collect_contrastive(model, calib_good, calib_bad, sites, pooling="mean", scope="prompt", progress=False)
    layers = range(model.n_layers) if settle_layers is None else settle_layers
    plans = {
        l: Plan({sites[l]: fit_map("directional_ablation", src[sites[l]], tgt[sites[l]], site=sites[l])})
        for l in layers
    }
    val = refusal_prompts(True, n_val, "val")
    n_steps = int(model.sampler_settings()["steps"])

    def score(texts):
        return [float(v) for v in scorer.scores(texts)]

    settle = single_step_effects(
        model, val, plans, score, at_steps=range(0, n_steps, settle_every), seed=seed, progress=progress
    )
    settle.lens = lens_settle(model, val, positions=(0, 1, 2), seed=seed)
    settle.plot(os.path.join(out, "settle.png"), title="refusal: ablate the refusal direction at one step only")
    best_i = int(settle.effect.min(dim=1).values.argmin())
    best = settle.layers[best_i]
    if float(settle.effect[best_i].min()) >= 0:  # no single-step ablation lowered refusal: nothing to window
        report["settle"] = {"baseline_refusal": settle.baseline, "records": settle.records, "window": None}
        report["settle"]["finding"] = "no layer's single-step ablation lowered refusal at any sampled step"
        return
    window = adaptive_window(settle.effect[best_i], settle.steps, frac=0.5, sign=-1)
    window = (window[0], min(n_steps, window[1] + settle_every - 1))  # the sampled steps stand for their stride
    report["settle"] = {
        "baseline_refusal": settle.baseline,
        "records": settle.records,
        "best_layer": best,
        "window": list(window),
        "lens_first_step": settle.lens["first_step"],
        "lens_top1_rate": settle.lens["top1_rate"],
    }
    report["adaptive_vs_always"] = _compare(model, plans[best], window, scorer, damage, seed, n_test, mc_num)


def _compare(model, plan, window, scorer, damage, seed, n_test, mc_num) -> list[dict]:
    from analyses.studies.organism.behaviours import refusal_prompts

    test_bad, test_good = refusal_prompts(True, n_test[0], "test"), refusal_prompts(False, n_test[1], "test")
    rows = []
    for name, p in (
        ("none", None),
        ("always-on", plan),
        (f"adaptive window {list(window)}", plan.window(steps=window)),
    ):
        bad = model.generate(test_bad, seed=seed, plan=p).texts
        good = model.generate(test_good, seed=seed, plan=p).texts
        dmg = damage(model, test_bad + test_good, bad + good, mc_num=mc_num, batch_size=mc_num, seed=seed)
        nll = [d["nll"] for d in dmg if d["nll"] is not None]
        good_ref = scorer.scores(good)
        rows.append(
            {
                "method": name,
                "harmful_refusal_rate": sum(scorer.scores(bad)) / len(bad),
                "harmless_answered": sum((not r) and not d["degenerate"] for r, d in zip(good_ref, dmg[len(bad) :]))
                / len(good),
                "degenerate_share": sum(d["degenerate"] for d in dmg) / len(dmg),
                "nll_per_token": sum(nll) / len(nll) if nll else None,
                "n_harmful": len(bad),
                "n_harmless": len(good),
            }
        )
    return rows


def _scatter(a: torch.Tensor, b: torch.Tensor, path: str) -> None:
    import matplotlib.pyplot as plt

    from analyses import plotting  # noqa: F401

    keep = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[keep], b[keep]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(b.numpy(), a.numpy(), s=6)
    lim = float(max(a.abs().max(), b.abs().max()))
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.7)
    ax.set_xlabel("activation patching effect")
    ax.set_ylabel("attribution patching estimate")
    ax.set_title("tiny-mdm refusal, step 0, every (role, layer, pos)", fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description="causal analysis of tiny-mdm's refusal (docs/causal.md)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="tiny-mdm")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained(args.model).eval()
    rep = run_study(model, args.out, args.pairs, args.seed)
    print(
        json.dumps(
            {k: rep[k] for k in ("clean_refusal", "corrupt_refusal", "attribution_agreement", "adaptive_vs_always")},
            indent=1,
            default=str,
        )
    )
    print(json.dumps(rep["patching_top"], default=str))
    print(json.dumps({k: rep["settle"][k] for k in ("best_layer", "window", "lens_first_step", "baseline_refusal")}))


if __name__ == "__main__":
    main()
