"""HookedMDM: a masked diffusion LM with named, step-aware hook sites.

The wrapper users hold. It reads names from `mdm_lens.sites`, attaches functions through `mdm_lens.hooking`
(onto the `HookPoint`s and layers of the family's module) and runs the family's sampler with the step clock."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import nn

from .cache import Reducer, StepCache, StepFilter
from .context import StepContext
from .families.base import FamilySpec, Site, resolve_mask_id
from .fast_path import AUGMENT_CACHED
from .generation import check_step_logits
from .hooking import HookSpec, ThreadGuard, attach_hooks
from .sampling.common import StepClock, StepInfo
from .sites import unknown_site_error
from .tl_circuits import TLCircuits
from .tl_conveniences import TLConveniences
from .validate import check_forward_inputs

# Augmenter: (input_ids, attention_mask, position_ids, step_info) -> extra (ids, mask) rows to run in the same
# batch, or None; step_info is the sampler's StepInfo (None in a plain forward).
Augmenter = Callable[
    [torch.Tensor, "torch.Tensor | None", "torch.Tensor | None", "StepInfo | None"],
    "tuple[torch.Tensor, torch.Tensor | None] | None",
]


class MaskedBatch(NamedTuple):
    """Prompts followed by a fully masked response: the t = 1 canvas."""

    input_ids: Int[torch.Tensor, "batch pos"]
    attention_mask: "torch.Tensor | None"
    prompt_length: int


class HookedMDM(TLConveniences, TLCircuits, nn.Module):
    """Wraps a native masked diffusion model: canonical sites, step context, samplers, caches.

    With no hook attached the forward is the bare model's plus a flag check, so an unhooked
    generation runs at native speed. TransformerLens' conveniences (cfg, W_U, to_tokens, run_with_cache,
    run_with_hooks, ...) come from `TLConveniences`; site names are TL's, aliases included (`mdm_lens.sites`).
    """

    def __init__(
        self,
        model: nn.Module,
        spec: FamilySpec,
        tokenizer=None,
        config: dict | None = None,
        name_or_path: str | None = None,
    ):
        super().__init__()
        self.model = model
        self.spec = spec
        self.tokenizer = tokenizer
        self.config = dict(config or {})
        self.name_or_path = name_or_path
        self.sites: dict[str, Site] = {s.name: s for s in spec.build_sites(model)}
        self.mask_id = resolve_mask_id(self.config, tokenizer, spec)  # 0 is a mask id, not a missing one
        self._n_hooks = 0
        self.step_clock = StepClock()  # samplers announce each step on it (sampling.common.announcing)
        self._ctx: StepContext | None = None
        self._augmenters: list[Augmenter] = []
        self._guard = ThreadGuard()  # one generation / hooked forward at a time (mdm_lens.hooking)
        self.active_fold = None  # the interventions.fold handle whose plan is in the weights, or None

    def __deepcopy__(self, memo: dict) -> "HookedMDM":
        """A clean model: weights and settings, no live step, hooks or thread guard (`mdm_lens.model_copy`)."""
        from .model_copy import clean_deepcopy

        return clean_deepcopy(self, memo)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        device_map: Any = None,
    ) -> "HookedMDM":
        """A hub id, a local folder in hub layout, or a packaged organism's short name (e.g. "tiny-if")."""
        from .loading import load_model
        from .organisms import resolve as resolve_organism

        path = resolve_organism(name_or_path) or name_or_path
        model, tokenizer, spec, config = load_model(path, dtype=dtype, device=device, device_map=device_map)
        return cls(model, spec, tokenizer, config, name_or_path=name_or_path)

    @classmethod
    def from_config(cls, config: dict, tokenizer=None, seed: int = 0, dtype: torch.dtype | None = None) -> "HookedMDM":
        """A randomly initialised model of any family (tests, benchmarks)."""
        from .families import detect_family
        from .loading import build_random_model, parse_dtype

        model = build_random_model(config, seed=seed)
        dtype = parse_dtype(dtype)
        if dtype is not None:
            model = model.to(dtype)
        return cls(model, detect_family(config), tokenizer, config)

    # ------------------------------------------------------------------ sites
    @property
    def hook_names(self) -> list[str]:
        """The canonical site names (aliases: `all_hook_names`)."""
        return list(self.sites)

    @property
    def n_layers(self) -> int:
        return 1 + max((s.layer for s in self.sites.values() if s.layer is not None), default=-1)

    def site(self, name: str) -> Site:
        site = self.sites.get(name) or self.sites.get(self.canonical_name(name))
        if site is None:
            raise unknown_site_error(name, self.all_hook_names)
        return site

    def site_names(self, roles: Iterable[str], layers: Iterable[int] | None = None) -> list[str]:
        """Names of the sites with these roles (`mdm_lens.sites`: resid_post, mlp_out, embed, ...), layer by
        layer in table order; `layers` limits the per-layer ones (all by default). Use it instead of
        building names by hand."""
        roles = set(roles)
        known = {s.role for s in self.sites.values()}
        if roles - known:
            raise ValueError(f"unknown site roles {sorted(roles - known)}; this model has {sorted(known)}")
        keep = None if layers is None else {int(l) for l in layers}
        bad = sorted(keep - set(range(self.n_layers))) if keep is not None else []
        if bad:
            raise ValueError(f"layers {bad} out of range; this model has layers 0..{self.n_layers - 1}")
        return [
            s.name
            for s in self.sites.values()
            if s.role in roles and (keep is None or s.layer is None or s.layer in keep)
        ]

    @property
    def input_device(self) -> torch.device:
        emb = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        p = emb.weight if emb is not None else next(self.model.parameters())
        return p.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def folded(self) -> bool:
        """Whether a plan is folded into the weights (`interventions.fold`; its handle is `active_fold`)."""
        return self.active_fold is not None

    @property
    def hooks_attached(self) -> bool:
        """Whether any hooks (model.hooks, steer, cache_steps) are attached now."""
        return self._n_hooks > 0

    def exclusive(self, what: str, doing: str | None = None):
        """`with model.exclusive("a generation"):` this thread owns the model (re-entrant); other threads'
        generations, hooks and forwards are refused with a clear error until the block ends."""
        return self._guard.held(what, doing)

    @property
    def step_info(self) -> StepInfo | None:
        """The sampler's StepInfo for the forward about to run (None outside a sampler); read-only."""
        return self.step_clock.info

    # ------------------------------------------------------------------ hooks
    def _current_ctx(self) -> StepContext:
        if self._ctx is None:
            raise RuntimeError("hook called outside HookedMDM.forward; call the wrapper, not the inner model")
        return self._ctx

    @contextmanager
    def hooks(self, spec: HookSpec) -> Iterator["HookedMDM"]:
        """`with model.hooks({site: fn})`: fn(act, ctx) -> replacement or None; removed on exit, always. A site may
        be named by an alias; `ctx.site` is then the name as given."""
        with (
            self._guard.held("attaching hooks", "hooks attached"),
            attach_hooks(self.model, spec, self._current_ctx, self._as_named),
        ):
            self._n_hooks += 1
            try:
                yield self
            finally:
                self._n_hooks -= 1

    def _as_named(self, name: str) -> Site:
        site = self.site(name)
        return site if site.name == name else replace(site, name=name)

    @contextmanager
    def augment_batch(self, fn: Augmenter) -> Iterator[None]:
        """Run extra rows (e.g. a masked reference) in the same forward; their logits are dropped."""
        self._augmenters.append(fn)
        try:
            yield
        finally:
            self._augmenters.remove(fn)

    def steer(self, plan):
        """Apply a plan (any `ModelIntervention`: `interventions.Plan`, reference alignment) or a dict
        site -> fn(act, ctx) for the `with` block."""
        from collections.abc import Mapping

        from .protocols import ModelIntervention

        if isinstance(plan, ModelIntervention):
            return plan.attach(self)
        if isinstance(plan, Mapping):
            return self.hooks(plan)
        raise TypeError(
            f"steer takes a plan (attach(model) and strength(lam)) or a dict site -> fn(act, ctx); got a "
            f"{type(plan).__name__}. Wrap site interventions as interventions.Plan({{site: intervention}})"
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: Int[torch.Tensor, "batch pos"],
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        prompt_length: int | None = None,
        *,
        past_key_values=None,
        use_cache: bool = False,
        replace_position: torch.Tensor | None = None,
    ) -> Float[torch.Tensor, "batch pos vocab"]:
        """Logits `[batch, pos, vocab]`. The KV-cached samplers (`llada_generate_cached`, `dream_generate_cached`;
        `docs/fast_sampling.md`) pass `past_key_values` / `use_cache` / `replace_position`, forwarded to the
        native model only when given; `use_cache=True` returns its `CachedOutput` (logits + past keys/values).
        Hooks then see the computed columns only (`ctx.computed`)."""
        if not isinstance(input_ids, torch.Tensor):  # text or texts, as TL's forward takes them
            input_ids, mask = self._encode(input_ids)
            attention_mask = mask if attention_mask is None else attention_mask
        main = input_ids.shape[0]
        check_forward_inputs(
            input_ids, attention_mask, cached=past_key_values is not None or use_cache or replace_position is not None
        )
        with self._guard.forward():  # no other thread's hooks or generation (mdm_lens.hooking)
            cached = past_key_values is not None or use_cache or replace_position is not None
            if self._augmenters:
                if cached:
                    raise RuntimeError(AUGMENT_CACHED)
                input_ids, attention_mask, position_ids = self._augment(input_ids, attention_mask, position_ids)
            kwargs = {}
            if attention_mask is not None:
                kwargs["attention_mask"] = attention_mask
            if position_ids is not None:
                kwargs["position_ids"] = position_ids
            if cached:
                kwargs.update(past_key_values=past_key_values, use_cache=use_cache, replace_position=replace_position)
            if self._n_hooks == 0:
                out = self.model(input_ids, **kwargs)
            else:
                info = self.step_clock.info
                prev = self._ctx
                self._ctx = StepContext(
                    input_ids,
                    attention_mask,
                    self.mask_id,
                    info=info,
                    prompt_length=info.prompt_length if info is not None else prompt_length,
                    logits_shift=self.spec.logits_shift,
                    main_rows=main,
                    family=self.spec.name,
                )
                try:
                    out = self.model(input_ids, **kwargs)
                finally:
                    self._ctx = prev
            logits = out.logits if hasattr(out, "logits") else out
            logits = logits[:main] if logits.shape[0] != main else logits
            if self.step_clock.info is not None:  # inside a sampler: once per step, one bool read
                check_step_logits(self, logits, self.step_clock.info)
            return out if use_cache else logits

    def _augment(self, ids, mask, pos):
        info = self.step_clock.info
        extras = [fn(ids, mask, pos, info) for fn in self._augmenters]
        extras = [e for e in extras if e is not None]
        if not extras:
            return ids, mask, pos
        ex_ids = torch.cat([e[0].to(ids.device) for e in extras])
        ex_mask = [e[1] if e[1] is not None else torch.ones_like(e[0]) for e in extras]
        ex_mask = torch.cat([m.to(ids.device) for m in ex_mask])
        base_mask = mask if mask is not None else torch.ones_like(ids)
        new_mask = torch.cat([base_mask, ex_mask.to(base_mask.dtype)])
        if pos is not None:
            ex_pos = (ex_mask.long().cumsum(-1) - 1).clamp_min(0)
            pos = torch.cat([pos, ex_pos.to(pos.device, pos.dtype)])
        all_ones = bool(new_mask.all())
        return torch.cat([ids, ex_ids]), (None if all_ones and mask is None else new_mask), pos

    # ------------------------------------------------------------------ caching
    @contextmanager
    def cache_steps(
        self,
        names: Iterable[str],
        steps: StepFilter = None,
        reduce: Reducer = None,
        scope: str = "all",
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> Iterator[StepCache]:
        """`with model.cache_steps([...]) as cache: model.generate(...)`; then `cache[site, step]`."""
        names = list(names)
        for n in names:
            self.site(n)
        cache = StepCache(names, steps=steps, reduce=reduce, scope=scope, device=device, dtype=dtype, model=self)
        with self.hooks(cache.hook_fns()):
            yield cache

    # ------------------------------------------------------------------ generation
    def sampler_settings(self, sampler: str = "reference", **overrides) -> dict[str, Any]:
        """The sampler options a generation uses: the family's recommended settings (plus, for `sampler="fast"`,
        the fast path's `cache`/`threshold`/... defaults: `mdm_lens.fast_path`), then the checkpoint's
        `mdm_lens_sampler` config entry, then `overrides` (the one place they are merged, and validated:
        `mdm_lens.generation.check_sampler_settings`). Explicit arguments name the run: a group of options that
        act together (Dream's temperature / top_p / top_k; alg / alg_temp: `SETTING_GROUPS`) takes no
        recommended value once the caller passes any member, so the rest keep the sampler's own defaults, as the
        reference call with the same keywords does."""
        from .fast_path import check_sampler_name, fast_defaults
        from .generation import check_sampler_settings, without_touched_groups

        base = dict(self.spec.recommended)
        source = {k: f"the {self.spec.name} family's recommended settings" for k in base}
        if check_sampler_name(sampler) == "fast":
            extra = fast_defaults(self.spec)
            base.update(extra)
            source.update({k: "the fast sampler's defaults (mdm_lens.fast_path)" for k in extra})
        saved = self.config.get("mdm_lens_sampler") or {}
        if not isinstance(saved, dict):
            raise ValueError(f"the model's config entry mdm_lens_sampler={saved!r} must be a dict of sampler settings")
        source.update({k: "the checkpoint's mdm_lens_sampler config" for k in saved})
        defaults = without_touched_groups({**base, **saved}, overrides, self.spec.sampler)
        source = {k: v for k, v in source.items() if k in defaults and k not in overrides}
        return check_sampler_settings({**defaults, **overrides}, source)

    @property
    def default_gen_length(self) -> int:
        """Response length of the merged settings (`spec.length_key`: gen_length / max_new_tokens), else 128."""
        return int(self.sampler_settings().get(self.spec.length_key) or 128)

    def masked_batch(self, prompts, gen_length: int | None = None, *, chat: bool = True) -> MaskedBatch:
        """Prompts (chat template applied when `chat`) left-padded, then `gen_length` mask tokens: the t = 1
        canvas on which contrastive activations are collected. On the model's input device."""
        from .generation import special_ids
        from .prompts import encode_prompts

        from .no_mask import require_mask_token

        require_mask_token(self, "masked_batch (a canvas of mask tokens)")
        gen = self.default_gen_length if gen_length is None else int(gen_length)
        if gen <= 0:
            raise ValueError(f"gen_length must be positive, got {gen}")
        ids, attn = encode_prompts(prompts, self.tokenizer, chat=chat, pad_id=special_ids(self)["pad"])
        plen = ids.shape[1]
        ids = torch.cat([ids, torch.full((ids.shape[0], gen), self.mask_id, dtype=torch.long)], 1)
        if attn is not None:
            attn = torch.cat([attn, torch.ones(ids.shape[0], gen, dtype=attn.dtype)], 1).to(self.input_device)
        return MaskedBatch(ids.to(self.input_device), attn, plen)

    def generate(
        self,
        prompts,
        *,
        plan=None,
        chat: bool = True,
        seed: int | None = None,
        progress: bool = False,
        sampler: str = "reference",
        verbose: bool | None = None,
        **sampler_kwargs,
    ):
        """Generate with the family's reference sampler and recommended settings (overridable). `sampler="fast"`
        runs Fast-dLLM's KV-cached sampler instead (options `cache="dual"|"prefix"`, `threshold=None|0.9`;
        approximate, see docs/fast_sampling.md); hooks and plans apply on both. `verbose` is TL's spelling of
        `progress` (a tqdm bar over the denoising steps).
        `replay=out` (a GenerationOutput or `sampling.replay.Schedule`) forces that run's unmasking order,
        `replay_mode="order"|"teacher"` (docs/causal.md)."""
        from .generation import run_generation

        if verbose is not None:
            progress = bool(verbose) or progress
        return run_generation(
            self, prompts, plan=plan, chat=chat, seed=seed, progress=progress, sampler=sampler, **sampler_kwargs
        )
