"""Activation patching with TransformerLens's API (`transformer_lens.patching`), plus a denoising-step axis.

`get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, patching_metric)` runs the corrupted input once per
(layer, position), each time with the clean activation written in at that one site, and returns
`patching_metric(patched_logits)` as a `[layer, pos]` tensor, exactly as TL does (tests/test_patching.py compares
with TL 4.3's own functions on the same weights).

Across denoising steps (`steps=`): `clean_cache` is a `ReplayedRun` (`analyses.replayed`: a clean generation's
schedule), `corrupted_tokens` the corrupted prompt (same shape as the clean one). At step s both runs read the same
response canvas (the clean run's, as a teacher-forced replay visits it), the corrupted one with its own prompt;
the patch writes the clean run's step-s activation, and the metric reads the step-s logits (`model.step_info` tells
it the step). `steps` is one step (result without a step axis), a list / range (leading step axis) or "all".

`scope=` (the project's scope words) patches only positions in the scope; positions outside it are not run and
hold NaN in by-position results (so they cannot pass for "no effect").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from mdm_lens.activation_cache import ActivationCache
from mdm_lens.context import check_scope
from mdm_lens.sites import get_act_name

from .replayed import ReplayedRun, at_step
from mdm_lens.safefile import save_figure_atomic

Metric = Callable[[torch.Tensor], torch.Tensor | float]
# kind -> (TL's index axes, setter): the setter writes `clean` into `act` (in place) at one index
AXES = {"layer_pos": ("layer", "pos"), "layer_head": ("layer", "head"), "layer_pos_head": ("layer", "pos", "head")}


def _set(kind: str, act: torch.Tensor, clean: torch.Tensor, index: tuple[int, ...], rows: torch.Tensor) -> None:
    """TL's `layer_pos_patch_setter` / `layer_head_vector_patch_setter` / `layer_head_pos_patch_setter`, with
    `rows` [batch, pos] limiting the write to in-scope (row, position) pairs."""
    clean = clean.to(act.device, act.dtype)
    if kind == "layer_pos":
        p = index[1]
        act[rows[:, p], p] = clean[rows[:, p], p]
    elif kind == "layer_head":
        h = index[1]
        act[..., h, :] = torch.where(rows[:, :, None], clean[..., h, :], act[..., h, :])
    else:
        p, h = index[1], index[2]
        act[rows[:, p], p, h] = clean[rows[:, p], p, h]


def _value(metric_out) -> float:
    v = float(metric_out.item() if isinstance(metric_out, torch.Tensor) else metric_out)
    if math.isnan(v):
        raise FloatingPointError("patching_metric returned NaN; check the metric (e.g. a division by a zero baseline)")
    return v


def _one_forward(
    model,
    kind: str,
    role: str,
    tokens: torch.Tensor,
    clean: ActivationCache,
    metric: Metric,
    scope: str,
    attention_mask,
    prompt_length,
    bar,
) -> torch.Tensor:
    """TL's `generic_activation_patch` on one input: one forward per index."""
    n_layers = model.n_layers
    n_pos = tokens.shape[1]
    n_heads = model.cfg.n_heads
    sizes = {"layer": n_layers, "pos": n_pos, "head": n_heads}
    axes = AXES[kind]
    out = torch.full(tuple(sizes[a] for a in axes), float("nan"))
    rows_box: dict = {}

    def scope_rows(ctx) -> torch.Tensor:
        if "rows" not in rows_box:
            rows_box["rows"] = ctx.scope_mask(scope)[: tokens.shape[0]].to(tokens.device)
        return rows_box["rows"]

    probe_scope = _scope_positions(model, tokens, scope, attention_mask, prompt_length)
    for index in itertools.product(*(range(sizes[a]) for a in axes)):
        if "pos" in axes and not bool(probe_scope[:, index[1]].any()):
            continue
        site = get_act_name(role, index[0])
        src = clean[site]

        def hook(act, ctx, index=index, src=src):
            act = act.clone()
            _set(kind, act, src, index, scope_rows(ctx))
            return act

        with torch.no_grad(), model.hooks({site: hook}):
            logits = model(tokens, attention_mask=attention_mask, prompt_length=prompt_length)
        out[index] = _value(metric(logits))
        if bar is not None:
            bar.update(1)
    return out


def _scope_positions(model, tokens, scope, attention_mask, prompt_length) -> torch.Tensor:
    """[batch, pos] in-scope mask of the input (a StepContext built as the forward will build it)."""
    from mdm_lens.context import StepContext

    info = model.step_info
    ctx = StepContext(
        tokens,
        attention_mask,
        model.mask_id,
        info=info,
        prompt_length=info.prompt_length if info is not None else prompt_length,
        logits_shift=model.spec.logits_shift,
        family=model.spec.name,
    )
    return ctx.scope_mask(scope).to(tokens.device)


def _patch(
    model,
    kind: str,
    role: str,
    corrupted_tokens,
    clean_cache,
    patching_metric: Metric,
    *,
    steps=None,
    scope: str = "all",
    attention_mask=None,
    prompt_length: int | None = None,
    progress: bool = True,
):
    check_scope(scope)
    if steps is None:
        if isinstance(clean_cache, ReplayedRun):
            raise TypeError("clean_cache is a ReplayedRun: pass steps= (a step, a list / range of steps, or 'all')")
        if scope != "all" and scope != "padding" and prompt_length is None and scope in ("prompt", "response"):
            raise ValueError(f"scope={scope!r} on one forward needs prompt_length= (where the response starts)")
        tokens = _ids(model, corrupted_tokens)
        bar = tqdm(desc=f"patching {role}", leave=False, disable=not progress)
        try:
            return _one_forward(
                model,
                kind,
                role,
                tokens,
                clean_cache,
                patching_metric,
                scope,
                _dev(attention_mask, model),
                prompt_length,
                bar,
            )
        finally:
            bar.close()
    if not isinstance(clean_cache, ReplayedRun):
        raise TypeError(
            f"steps={steps!r} patches across denoising steps: clean_cache must be a ReplayedRun "
            "(analyses.replayed.ReplayedRun.of(model, clean_generation)), not a "
            f"{type(clean_cache).__name__}"
        )
    run = clean_cache
    chosen = run.check_steps(steps)
    names = [get_act_name(role, layer) for layer in range(model.n_layers)]
    run.cache(model, names, chosen)
    prompt = _ids(model, corrupted_tokens)[:, : run.prompt_length].cpu()
    maps = []
    bar = tqdm(desc=f"patching {role} over {len(chosen)} steps", leave=False, disable=not progress)
    try:
        for s in chosen:
            with at_step(model, run, s):
                maps.append(
                    _one_forward(
                        model,
                        kind,
                        role,
                        run.canvas(s, prompt).to(model.input_device),
                        run.caches[s],
                        patching_metric,
                        scope,
                        _dev(run.mask(), model),
                        run.prompt_length,
                        bar,
                    )
                )
    finally:
        bar.close()
    return maps[0] if isinstance(steps, int) else torch.stack(maps)


def _dev(t, model):
    return None if t is None else t.to(model.input_device)


def _ids(model, tokens) -> torch.Tensor:
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() == 1:
            tokens = tokens[None]
        return tokens.to(model.input_device)
    ids = model.to_tokens(tokens)
    return ids.to(model.input_device)


def _doc(what: str, shape: str):
    def wrap(fn):
        fn.__doc__ = (
            f"Patch {what} from `clean_cache` into the corrupted run, one index at a time -> "
            f"`{shape}` (TL's function of this name; `steps=` / `scope=`: module docstring)."
        )
        return fn

    return wrap


@_doc("the residual stream before each block, per position", "[layer, pos]")
def get_act_patch_resid_pre(
    model, corrupted_tokens, clean_cache, patching_metric: Metric, **kw
) -> Float[torch.Tensor, "... layer pos"]:
    return _patch(model, "layer_pos", "resid_pre", corrupted_tokens, clean_cache, patching_metric, **kw)


@_doc("the residual stream between attention and MLP, per position", "[layer, pos]")
def get_act_patch_resid_mid(
    model, corrupted_tokens, clean_cache, patching_metric: Metric, **kw
) -> Float[torch.Tensor, "... layer pos"]:
    return _patch(model, "layer_pos", "resid_mid", corrupted_tokens, clean_cache, patching_metric, **kw)


@_doc("each block's attention output, per position", "[layer, pos]")
def get_act_patch_attn_out(
    model, corrupted_tokens, clean_cache, patching_metric: Metric, **kw
) -> Float[torch.Tensor, "... layer pos"]:
    return _patch(model, "layer_pos", "attn_out", corrupted_tokens, clean_cache, patching_metric, **kw)


@_doc("each block's MLP output, per position", "[layer, pos]")
def get_act_patch_mlp_out(
    model, corrupted_tokens, clean_cache, patching_metric: Metric, **kw
) -> Float[torch.Tensor, "... layer pos"]:
    return _patch(model, "layer_pos", "mlp_out", corrupted_tokens, clean_cache, patching_metric, **kw)


@_doc("each attention head's output (hook_z) at every position at once", "[layer, head]")
def get_act_patch_attn_head_out_all_pos(
    model, corrupted_tokens, clean_cache, patching_metric: Metric, **kw
) -> Float[torch.Tensor, "... layer head"]:
    return _patch(model, "layer_head", "z", corrupted_tokens, clean_cache, patching_metric, **kw)


@_doc("each attention head's output (hook_z) at each position", "[layer, pos, head]")
def get_act_patch_attn_head_out_by_pos(
    model, corrupted_tokens, clean_cache, patching_metric: Metric, **kw
) -> Float[torch.Tensor, "... layer pos head"]:
    return _patch(model, "layer_pos_head", "z", corrupted_tokens, clean_cache, patching_metric, **kw)


def get_act_patch_block_every(
    model, corrupted_tokens, clean_cache, patching_metric: Metric, **kw
) -> Float[torch.Tensor, "... 3 layer pos"]:
    """resid_pre, attn_out and mlp_out patched per (layer, position), stacked -> `[3, layer, pos]` (TL's order);
    with a step axis, `[step, 3, layer, pos]`."""
    parts = [
        fn(model, corrupted_tokens, clean_cache, patching_metric, **kw)
        for fn in (get_act_patch_resid_pre, get_act_patch_attn_out, get_act_patch_mlp_out)
    ]
    return torch.stack(parts, dim=-3)


def plot_patching(
    result: torch.Tensor,
    path: str,
    *,
    title: str = "activation patching",
    xlabel: str = "position",
    ylabel: str = "layer",
    steps: Sequence[int] | None = None,
    xticklabels: Sequence[str] | None = None,
    center: bool = True,
) -> str:
    """Heatmap(s) of a patching result: `[layer, x]` one panel; `[step, layer, x]` one panel per step (`steps`
    labels them). NaN (out of scope) is blank; returns `path`."""
    import matplotlib.pyplot as plt

    from . import plotting  # noqa: F401  (Agg backend)

    r = result.detach().float().cpu()
    panels = [r] if r.dim() == 2 else list(r)
    if r.dim() not in (2, 3):
        raise ValueError(f"plot_patching takes [layer, x] or [step, layer, x], got shape {tuple(r.shape)}")
    n = len(panels)
    fig, axes = plt.subplots(
        1, n, figsize=(min(4 + 0.25 * r.shape[-1], 12) if n == 1 else 2.2 * n + 1.5, 3.2), squeeze=False
    )
    finite = r[torch.isfinite(r)]
    vmax = float(finite.abs().max()) if finite.numel() else 1.0
    kw = dict(cmap="RdBu", vmin=-vmax, vmax=vmax) if center else dict(cmap="viridis")
    for k, (ax, m) in enumerate(zip(axes[0], panels)):
        im = ax.imshow(m.numpy(), aspect="auto", interpolation="nearest", **kw)
        ax.set_xlabel(xlabel)
        if k == 0:
            ax.set_ylabel(ylabel)
        if n > 1:
            ax.set_title(f"step {steps[k] if steps is not None else k}", fontsize=8)
        if xticklabels is not None:
            ax.set_xticks(range(len(xticklabels)), xticklabels, rotation=90, fontsize=6)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(path)
