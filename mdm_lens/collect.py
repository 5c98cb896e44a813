"""Contrastive activation collection (tracing) as the steering papers do it: pooled per prompt, in the hook.

At t = 1 the response is fully masked (`model.masked_batch`, one forward per batch); with `at_steps=`
activations come from a real denoising run at those steps. Pooling ('mean', 'last', 'none') runs in the
hook over a token scope (`mdm_lens.context.SCOPES`: 'all' = every non-pad position, 'prompt', 'response',
...), so memory is `[n, d]` per site whatever the sequence length. Accumulation is float64.
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from .context import check_scope
from .safefile import open_safetensors, reading, save_safetensors_atomic
from .scope_cache import CACHE_FIX, computes_none_of_scope
from .validate import is_int

POOLINGS = ("mean", "last", "none")


class Activations:
    """Site -> pooled activations `[n, d]` (float64); estimators take `acts[site]` directly."""

    def __init__(self, data: dict[str, torch.Tensor], meta: dict | None = None):
        self.data, self.meta = data, dict(meta or {})

    def __getitem__(self, site: str) -> Float[torch.Tensor, "n d"]:
        if site not in self.data:
            raise KeyError(f"no activations for {site!r}; collected sites: {sorted(self.data)}")
        return self.data[site]

    @property
    def sites(self) -> list[str]:
        return list(self.data)

    def __len__(self) -> int:
        return next(iter(self.data.values())).shape[0] if self.data else 0

    def save(self, path) -> None:
        meta = {"format": "mdm-lens-activations", "meta": json.dumps(self.meta, default=str)}
        save_safetensors_atomic(self.data, path, meta)

    @classmethod
    def load(cls, path) -> "Activations":
        with open_safetensors(path, "an mdm-lens activations file") as f, reading(path, "an mdm-lens activations file"):
            meta = f.metadata() or {}
            if meta.get("format") != "mdm-lens-activations":
                raise ValueError(f"{path} is not an mdm-lens activations file")
            return cls({k: f.get_tensor(k) for k in f.keys()}, json.loads(meta["meta"]))


def _pool(act: torch.Tensor, sel: torch.Tensor, pooling: str) -> torch.Tensor:
    act = act.to(torch.float64)
    if pooling == "mean":
        w = sel.to(torch.float64).unsqueeze(-1)
        return (act * w).sum(1) / w.sum(1)
    if pooling == "last":
        idx = (torch.arange(sel.shape[1], device=sel.device) * sel).argmax(1)
        return act[torch.arange(act.shape[0]), idx]
    return act[sel]


def _check_args(model, prompts, sites, pooling, scope):
    if not prompts:
        raise ValueError("empty prompt set: give at least one prompt")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
    check_scope(scope)
    for s in sites:
        model.site(s)


def collect(
    model,
    prompts: Sequence[str],
    sites: Iterable[str],
    *,
    pooling: str = "mean",
    scope: str = "all",
    gen_length: int | None = None,
    at_steps: Sequence[int] | None = None,
    batch_size: int = 16,
    chat: bool = True,
    progress: bool = True,
    **sampler_kwargs,
) -> Activations:
    """Pooled activations per prompt: at t = 1 (default) or at the denoising steps `at_steps` of a real
    generation (rows stacked in step order per batch; sampler options such as `steps=` pass through)."""
    sites = list(sites)
    if at_steps is not None:
        at_steps = _steps_arg(at_steps)
    store, gen, ts = _run(
        model,
        prompts,
        sites,
        pooling,
        scope,
        gen_length,
        at_steps,
        batch_size,
        chat,
        progress,
        sampler_kwargs,
        by_step=False,
    )
    missing = [s for s in (at_steps or []) if s not in ts]
    if missing:  # as collect_by_step: never a silent subset of the steps
        raise ValueError(
            f"steps {missing} never ran: the sampler ran steps 0..{max(ts, default=-1)}; "
            "pick steps below its `steps` setting"
        )
    if set(store) != set(sites):
        raise ValueError(
            f"no activation was recorded at steps {list(at_steps or [])}: the sampler's steps run "
            "0..steps-1; pick steps below its `steps` setting"
        )
    data = {s: torch.cat(store[s]) for s in sites}
    return Activations(
        data,
        {
            "pooling": pooling,
            "scope": scope,
            "gen_length": gen,
            "n_prompts": len(prompts),
            "at_steps": list(at_steps) if at_steps is not None else None,
            "t": 1.0 if at_steps is None else None,
        },
    )


def collect_by_step(
    model,
    prompts: Sequence[str],
    sites: Iterable[str],
    at_steps: Sequence[int],
    *,
    pooling: str = "mean",
    scope: str = "all",
    gen_length: int | None = None,
    batch_size: int = 16,
    chat: bool = True,
    progress: bool = True,
    **sampler_kwargs,
) -> dict[int, Activations]:
    """One `Activations` per denoising step in `at_steps`, all from one real generation per batch: what a
    per-timestep map is fitted on. Each one's `meta["t"]` is the mean share of response positions still masked
    at that step (the `ctx.t` a `TimestepSchedule` reads at run time)."""
    sites, steps = list(sites), sorted(set(_steps_arg(at_steps)))
    if not steps:
        raise ValueError("at_steps is empty: give the denoising steps to collect at, e.g. [0, 8, 16]")
    store, gen, ts = _run(
        model,
        prompts,
        sites,
        pooling,
        scope,
        gen_length,
        steps,
        batch_size,
        chat,
        progress,
        sampler_kwargs,
        by_step=True,
    )
    missing = [s for s in steps if s not in ts]
    if missing:
        raise ValueError(
            f"steps {missing} never ran: the sampler ran steps 0..{max(ts, default=-1)}; "
            "pick steps below its `steps` setting"
        )
    return {
        s: Activations(
            {site: torch.cat(store[(site, s)]) for site in sites},
            {
                "pooling": pooling,
                "scope": scope,
                "gen_length": gen,
                "n_prompts": len(prompts),
                "at_steps": [s],
                "t": sum(ts[s]) / len(ts[s]),
            },
        )
        for s in steps
    }


def _steps_arg(at_steps) -> list[int]:
    steps = list(at_steps) if isinstance(at_steps, (list, tuple, set, range)) else None
    if steps is None or not all(is_int(s) and s >= 0 for s in steps):
        raise ValueError(f"at_steps={at_steps!r}: give a list of denoising step indices (ints >= 0), e.g. [0, 8, 16]")
    return steps


def _run(
    model,
    prompts,
    sites,
    pooling,
    scope,
    gen_length,
    at_steps,
    batch_size,
    chat,
    progress,
    sampler_kwargs,
    by_step: bool,
):
    """The collection loop: (store keyed by site or (site, step), gen length, step -> observed t list)."""
    _check_args(model, prompts, sites, pooling, scope)
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an int >= 1 (prompts per generation)")
    gen = gen_length or model.default_gen_length
    store: dict = {}
    seen_t: dict[int, list[float]] = {}
    cache_skipped: set[int] = set()
    batch_prompts: list[str] = []

    def pool(act, ctx):
        if ctx.site == sites[0] and ctx.step is not None:
            seen_t.setdefault(ctx.step, []).append(ctx.t)
        if at_steps is not None and ctx.step not in at_steps:
            return None
        sel = ctx.scope_mask(scope, act.device)[: ctx.main_rows]
        if computes_none_of_scope(ctx, sel):  # absent under the KV cache (mdm_lens.scope_cache)
            cache_skipped.add(ctx.step)
            return None
        empty = (sel.sum(1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"scope {scope!r} selects no position for prompt {batch_prompts[empty[0]]!r}")
        key = (ctx.site, ctx.step) if by_step else ctx.site
        store.setdefault(key, []).append(_pool(act[: ctx.main_rows], sel, pooling).cpu())

    bar = tqdm(total=len(prompts), desc="collect", disable=not progress, leave=False)
    with torch.no_grad(), model.hooks({s: pool for s in sites}):
        for i in range(0, len(prompts), batch_size):
            batch_prompts[:] = list(prompts[i : i + batch_size])
            if at_steps is None:
                ids, attn, plen = model.masked_batch(batch_prompts, gen, chat=chat)
                model(ids, attention_mask=attn, prompt_length=plen)
            else:
                model.generate(batch_prompts, chat=chat, **{model.spec.length_key: gen, **sampler_kwargs})
            bar.update(len(batch_prompts))
    bar.close()
    if not store and cache_skipped:
        raise ValueError(f"scope {scope!r} selects no position any forward computed: {CACHE_FIX}")
    return store, gen, seen_t


def collect_contrastive(
    model, source_prompts: Sequence[str], target_prompts: Sequence[str], sites: Iterable[str], **kwargs
) -> tuple[Activations, Activations]:
    """(source, target) activations, e.g. prompts without / with an instruction."""
    sites = list(sites)
    return collect(model, source_prompts, sites, **kwargs), collect(model, target_prompts, sites, **kwargs)
