"""nnsight 0.8 interop: an `NNsight` envelope whose denoising loop is traceable.

    import nnsight
    from mdm_lens.nnsight_interop import MDMEnvelope
    env = MDMEnvelope(model)                                  # model: HookedMDM (wrapped in place)
    with env.generate(["Describe a cat."], gen_length=16, steps=8, block_length=16) as tracer:
        saved = nnsight.save([])                              # only .save()d names leave the block
        for step in tracer.iter[2:5]:                         # model forwards 2, 3, 4 = denoising steps
            h = env.act("blocks.1.hook_resid_post")           # the live tensor of a canonical site
            saved.append(h.clone().save())
            if step == 3:
                h[:] = 0                                      # edit at step 3 only
        out = tracer.result.save()                            # the GenerationOutput

The samplers call the model once per step (CFG included: one forward carries both halves), so
nnsight's iteration index *is* the step index. See docs/nnsight.md for the rules nnsight imposes.
"""

from __future__ import annotations

from typing import Any

import torch
from nnsight import NNsight
from nnsight.intervention.batching import Batcher
from nnsight.intervention.envoy import traceable

from .activation_cache import every_site_name

_DATA_KEYS = ("input_ids", "prompts")


def _data(inputs: tuple, kwargs: dict) -> Any:
    """An invoke's row-carrying input: the first positional, else `input_ids=` / `prompts=`."""
    if inputs:
        return inputs[0]
    return next((kwargs[k] for k in _DATA_KEYS if kwargs.get(k) is not None), None)


def _rows(data: Any) -> int:
    if data is None:
        return 0
    if isinstance(data, torch.Tensor):
        return 1 if data.dim() <= 1 else data.shape[0]
    if isinstance(data, str):
        return 1
    if isinstance(data, (list, tuple)):
        return 1 if data and all(isinstance(t, int) for t in data) else len(data)
    return 1


def _as_rows(data: Any) -> list:
    """Prompts (a string, strings, id lists) as a list of rows, so invokes concatenate."""
    if isinstance(data, str) or (isinstance(data, (list, tuple)) and data and all(isinstance(t, int) for t in data)):
        return [data]
    return list(data)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool((a == b).all())
        )
    return a == b


class _MDMBatcher(Batcher):
    """Refuses invokes under CFG: the doubled batch is not a plain stack of invoke rows."""

    def assemble(self, fn: Any) -> tuple:
        args, kwargs = super().assemble(fn)
        model = self.envoy._module
        used = model.sampler_settings(**kwargs)
        if self.batching and getattr(fn, "__name__", "") == "generate" and float(used.get("cfg_scale") or 0) > 0:
            raise NotImplementedError(
                "several tracer.invoke() blocks with cfg_scale > 0 are not supported: the forward carries "
                "[conditional rows; unconditional rows], which nnsight cannot scope per invoke. Use one "
                "invoke and index rows yourself (rows [:B] conditional, [B:] unconditional)"
            )
        return args, kwargs


def _pinned_iteration() -> int | None:
    """Inside a `tracer.iter` body that has not yet touched a module: the iteration (= denoising step) it is pinned
    to. None outside nnsight's worker, or once a request has bound the body to a forward (nnsight relaxes the pin)."""
    from greenlet import getcurrent

    ref = getattr(getcurrent(), "mediator", None)
    mediator = ref() if callable(ref) else None
    it = getattr(mediator, "iteration", None)
    return it if isinstance(it, int) else None


class MDMEnvelope(NNsight):
    """Wraps a HookedMDM for nnsight: `generate` runs the family's sampler under a trace.

    `.trace(input_ids)` traces one plain forward (HookedMDM.forward). Sites can be named canonically:
    `site(name)` is the module's Envoy, `act(name)` / `set_act(name, v)` read / replace the tensor the
    mdm_lens hooks see (the output, its first element for tuple outputs, or the first input for
    "input" sites). Several `tracer.invoke(...)` blocks batch their prompts into one generation.
    """

    _batcher_class = _MDMBatcher

    @traceable
    def generate(self, prompts, **kwargs: Any):
        """`HookedMDM.generate`; under `with`, its forwards (one per denoising step) are traced."""
        return self._module.generate(prompts, **kwargs)

    # ------------------------------------------------------------------ canonical sites
    def site(self, name: str):
        """The Envoy of the module carrying canonical site `name` (read `.output`, or `.input` for input sites)."""
        return self.model.get(self._module.site(name).module_path)

    def act(self, name: str) -> torch.Tensor:
        """Inside a trace: the live tensor of site `name`, as mdm_lens hooks see it (in-place edits apply)."""
        env = self.site(name)
        if self._module.site(name).kind == "input":
            return env.input
        out = env.output
        return out[0] if type(out) is tuple else out

    def set_act(self, name: str, value: torch.Tensor) -> None:
        """Inside a trace: replace the tensor of site `name` for the current step."""
        env = self.site(name)
        if self._module.site(name).kind == "input":
            env.input = value
            return
        out = env.output
        env.output = (value, *out[1:]) if type(out) is tuple else value

    @property
    def step_info(self):
        """The sampler's StepInfo (step, num_steps, block, ...) of the forward now running; None outside a sampler.

        Valid from the first line of each `tracer.iter` iteration: until the body touches a module, nnsight's worker
        still runs while the model waits in the previous step (the clock would read that step, or None before the
        first). Then this waits for the iteration's own forward to begin (a read of the root module's input, which
        fires before any site of that forward), so the clock holds that step."""
        info = self._module.step_info
        pinned = _pinned_iteration()
        if pinned is None or (info is not None and info.step == pinned):
            return info
        self.inputs  # noqa: B018 - the wait: resolves when forward `pinned` is called
        return self._module.step_info

    def cache(self, tracer, sites=None, **kwargs: Any) -> SiteCache:
        """Inside a trace, before any module is read: nnsight's `tracer.cache(...)` over the modules of `sites`
        (canonical names or aliases; None: every canonical site but the token canvas), keyed by canonical site name. Read it after the
        block: `cache["blocks.1.hook_resid_post"]` is the list of per-forward tensors (one per denoising step), each
        the tensor mdm-lens hooks see at that site. Saved, so it leaves the block. Other kwargs go to
        `tracer.cache` (device, dtype, ...)."""
        import nnsight

        names = every_site_name(self._module) if sites is None else list(sites)
        chosen = {self._module.site(n).name: self._module.site(n) for n in names}
        canvas = [n for n, s in chosen.items() if s.role == "embed_in"]
        if canvas and sites is not None:
            raise ValueError(
                f"{canvas}: nnsight's cache keeps the sampler's canvas by reference, and the sampler "
                "unmasks into it in place, so every step would read the final canvas. Use "
                "model.cache_steps([...]) (it copies), or the decode trace (generate(return_history=True))"
            )
        chosen = {n: s for n, s in chosen.items() if n not in canvas}
        inputs = any(s.kind == "input" for s in chosen.values())
        view = tracer.cache(modules=[self.site(n) for n in chosen], include_inputs=inputs, **kwargs)
        paths = {n: self.site(n).path for n in chosen}
        return nnsight.save(SiteCache(view, paths, {n: s.kind for n, s in chosen.items()}, self._module))

    # ------------------------------------------------------------------ invokes (nnsight batching)
    def _batch_size(self, *inputs: Any, **kwargs: Any) -> int:
        return _rows(_data(inputs, kwargs))

    def _batch(self, invokes: list[tuple], fn: Any) -> tuple:
        """Concatenate invokes: prompt lists (generate) or equal-length id tensors (trace / generate)."""
        if len(invokes) <= 1:
            return super()._batch(invokes, fn)
        datas = [_data(args, kw) for args, kw in invokes]
        rest = [{k: v for k, v in kw.items() if k not in _DATA_KEYS + ("attention_mask",)} for _, kw in invokes]
        for r in rest[1:]:
            if r.keys() != rest[0].keys() or not all(_same(r[k], rest[0][k]) for k in r):
                raise ValueError(f"tracer.invoke() blocks must share their keyword options; got {rest}")
        kwargs = dict(rest[0])
        if not all(isinstance(d, torch.Tensor) for d in datas):
            if any(isinstance(d, torch.Tensor) for d in datas):
                raise TypeError("mixing tensors and prompts across tracer.invoke() blocks; pass id lists instead")
            return ([row for d in datas for row in _as_rows(d)],), kwargs
        ids = [d if d.dim() == 2 else d.unsqueeze(0) for d in datas]
        if len({t.shape[1] for t in ids}) > 1:
            raise ValueError(
                "tracer.invoke() id tensors must share a length (for generate, pass lists of "
                "id lists: they are left-padded together)"
            )
        masks = [kw.get("attention_mask") for _, kw in invokes]
        if any(m is not None for m in masks):
            kwargs["attention_mask"] = torch.cat(
                [torch.ones_like(t) if m is None else m.reshape(t.shape) for t, m in zip(ids, masks)]
            )
        return (torch.cat(ids),), kwargs


class SiteCache:
    """nnsight's cache of an envelope's generation, keyed by canonical site name (`MDMEnvelope.cache`). A site's
    value is the list of its per-forward tensors (one per denoising step) as mdm-lens hooks see them: the output
    (its first element when the module returns a tuple), or the first input of an input site. Aliases resolve."""

    def __init__(self, view, paths: dict[str, str], kinds: dict[str, str], model):
        self._view, self._paths, self._kinds, self._model = view, paths, kinds, model

    def keys(self) -> list[str]:
        return [n for n, p in self._paths.items() if p in self._view.keys()]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, name: str) -> bool:
        try:
            return self._model.site(name).name in self.keys()
        except KeyError:
            return False

    def __getitem__(self, name: str) -> list[torch.Tensor]:
        site = self._model.site(name)  # an unknown name fails naming the closest real ones
        if site.name not in self._paths:
            raise KeyError(f"site {site.name!r} was not cached; cached: {list(self._paths)[:8]}")
        entries = self._view._cache.entries.get(self._paths[site.name], [])
        if self._kinds[site.name] == "input":
            return [e.input for e in entries]
        return [e.output[0] if type(e.output) is tuple else e.output for e in entries]

    def items(self):
        return [(n, self[n]) for n in self.keys()]

    def __repr__(self) -> str:
        return f"SiteCache({len(self)} sites: {self.keys()[:4]})"
