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
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool((a == b).all())
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
                "invoke and index rows yourself (rows [:B] conditional, [B:] unconditional)")
        return args, kwargs


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
        """The sampler's StepInfo (step, num_steps, block, ...) of the forward now running; None outside."""
        return self._module.step_info

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
            raise ValueError("tracer.invoke() id tensors must share a length (for generate, pass lists of "
                             "id lists: they are left-padded together)")
        masks = [kw.get("attention_mask") for _, kw in invokes]
        if any(m is not None for m in masks):
            kwargs["attention_mask"] = torch.cat([torch.ones_like(t) if m is None else m.reshape(t.shape)
                                                  for t, m in zip(ids, masks)])
        return (torch.cat(ids),), kwargs
