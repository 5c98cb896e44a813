"""Attribution patching (Nanda 2023; Syed et al. 2023) and its integrated-gradients form (EAP-IG; Hanna et al. 2024).

Activation patching costs one forward per site; attribution patching estimates every site's patching effect at
once with a first-order expansion around the corrupted run:

    effect(site, pos) ~= sum over batch and hidden of  d metric / d act  *  (clean act - corrupted act)

one forward and one backward for every site, head and position. It is exact where the metric is linear in the
site (tests/test_attribution.py checks this against activation patching) and a guide elsewhere (its agreement with
activation patching is a number to report: `agreement`). `method="ig"` averages the gradient over `k` points on the
straight path from the corrupted to the clean input embeddings (alpha = 1/k, 2/k, ..., 1), which tracks the
nonlinear case better at k times the cost.

Across denoising steps, pass `run=` (a `ReplayedRun`) and `step=`: both inputs are that step's canvas of the clean
run, with the clean and the corrupted prompt (analyses.replayed). Results are the shapes `analyses.patching`
returns: `[layer, pos]` per residual / output role, `[layer, pos, head]` for "z" (sum over pos gives `[layer,
head]`, the all-positions head patch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mdm_lens.sites import get_act_name

from .patching import _dev, _ids
from .replayed import ReplayedRun, at_step

ROLES = ("resid_pre", "resid_mid", "attn_out", "mlp_out", "z")
METHODS = ("ap", "ig")


def _cache(model, tokens, names, mask, plen) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}

    def keep(act, ctx):
        store[ctx.site] = act.detach().clone()

    with torch.no_grad(), model.hooks({n: keep for n in names}):
        model(tokens, attention_mask=mask, prompt_length=plen)
    return store


def _grads(model, tokens, names, metric, mask, plen, embed_path=None) -> dict[str, torch.Tensor]:
    """d metric / d act at every site in `names`, one forward + one backward (params get no gradient)."""
    acts: dict[str, torch.Tensor] = {}

    def hold(act, ctx):
        acts[ctx.site] = act
        return act

    spec = {n: hold for n in names}
    if embed_path is not None:
        spec = {**spec, "hook_embed": [embed_path] + ([hold] if "hook_embed" in names else [])}
    with torch.enable_grad(), model.hooks(spec):
        value = metric(model(tokens, attention_mask=mask, prompt_length=plen))
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise TypeError(
                "the metric must return a 0-dim tensor that depends on the logits (a float has no gradient)"
            )
        gs = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True)
    return {n: (torch.zeros_like(acts[n]) if g is None else g.detach()) for n, g in zip(names, gs)}


def attribution_patch(
    model,
    clean_tokens,
    corrupted_tokens,
    metric: Callable[[torch.Tensor], torch.Tensor],
    *,
    roles: Sequence[str] = ("resid_pre", "attn_out", "mlp_out", "z"),
    method: str = "ap",
    k: int = 5,
    run: ReplayedRun | None = None,
    step: int | None = None,
    attention_mask=None,
    prompt_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """-> {role: attribution} (`[layer, pos]`, or `[layer, pos, head]` for "z"): the estimated change of `metric`
    when the clean activation is patched into the corrupted run at that site. Module docstring for the method."""
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"roles {bad} not supported; use any of {ROLES}")
    if method not in METHODS:
        raise ValueError(f"method={method!r}; use 'ap' (one backward) or 'ig' (integrated gradients over k points)")
    if method == "ig" and (not isinstance(k, int) or k < 1):
        raise ValueError(f"k={k!r}: the number of interpolation points must be an integer >= 1")
    names = [get_act_name(r, layer) for r in roles for layer in range(model.n_layers)]
    if run is not None:
        if step is None:
            raise ValueError("run= needs step= (which denoising step of the replayed run to attribute)")
        run.check_steps(step)
        prompt = _ids(model, corrupted_tokens)[:, : run.prompt_length].cpu()
        clean_ids, corr_ids = run.canvas(step), run.canvas(step, prompt)
        mask, plen = _dev(run.mask(), model), run.prompt_length
        with at_step(model, run, step):
            return _attribute(
                model,
                clean_ids.to(model.input_device),
                corr_ids.to(model.input_device),
                names,
                roles,
                metric,
                method,
                k,
                mask,
                plen,
            )
    return _attribute(
        model,
        _ids(model, clean_tokens),
        _ids(model, corrupted_tokens),
        names,
        roles,
        metric,
        method,
        k,
        _dev(attention_mask, model),
        prompt_length,
    )


def _attribute(model, clean, corrupted, names, roles, metric, method, k, mask, plen) -> dict[str, torch.Tensor]:
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)} inputs must have one "
            "shape (attribution compares like positions)"
        )
    c_acts = _cache(model, clean, names + ["hook_embed"], mask, plen)
    x_acts = _cache(model, corrupted, names + ["hook_embed"], mask, plen)
    if method == "ap":
        grads = _grads(model, corrupted, names, metric, mask, plen)
    else:
        grads = {n: torch.zeros_like(x_acts[n]) for n in names}
        e_c, e_x = c_acts["hook_embed"], x_acts["hook_embed"]
        for j in range(1, k + 1):
            alpha = j / k

            def path(act, ctx, alpha=alpha):
                return (e_x + alpha * (e_c - e_x)).to(act.dtype).requires_grad_(True)

            g = _grads(model, corrupted, names, metric, mask, plen, embed_path=path)
            for n in names:
                grads[n] += g[n] / k
    out: dict[str, torch.Tensor] = {}
    for r in roles:
        per_layer = []
        for layer in range(model.n_layers):
            n = get_act_name(r, layer)
            contrib = (grads[n].double() * (c_acts[n].double() - x_acts[n].double())).sum(0)  # over the batch
            per_layer.append(contrib.sum(-1))  # over hidden (d_model, or d_head for z)
        out[r] = torch.stack(per_layer).float().cpu()
    return out


def agreement(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Pearson correlation and sign agreement over the sites both estimate (NaN sites dropped)."""
    a, b = a.flatten().double(), b.flatten().double()
    keep = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[keep], b[keep]
    if a.numel() < 2:
        raise ValueError("agreement needs at least 2 sites present in both results")
    ac, bc = a - a.mean(), b - b.mean()
    den = float(ac.norm() * bc.norm())
    r = float((ac * bc).sum()) / den if den > 0 else float("nan")
    return {
        "pearson": r,
        "sign_agreement": float((torch.sign(a) == torch.sign(b)).double().mean()),
        "n": int(a.numel()),
    }
