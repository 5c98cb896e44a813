"""nnsight 0.8 interop: an `NNsight` envelope whose denoising loop is traceable.

    from mdm_lens.nnsight_interop import MDMEnvelope
    env = MDMEnvelope(model)                              # model: HookedMDM
    with env.generate(["Describe a cat."], gen_length=16, steps=8, block_length=16) as tracer:
        block = env.site("blocks.1.hook_resid_post")      # the Envoy of that canonical site's module
        for step in tracer.iter[2:5]:                     # model forwards = denoising steps 2, 3, 4
            saved.append(block.output.save())
        for step in tracer.iter[3]:
            block.output[:] = 0                           # edit at step 3 only
        out = tracer.result.save()                        # the GenerationOutput

Every denoising step is one call of each module, so nnsight's iteration index is the step index (for
CFG, one call covers both halves). Sites whose kind is "input" are read through `.input`.
"""
from __future__ import annotations

from typing import Any

from nnsight import NNsight
from nnsight.intervention.envoy import traceable


class MDMEnvelope(NNsight):
    """Wraps a HookedMDM; `generate` runs the family's reference sampler under an nnsight trace."""

    @traceable
    def generate(self, prompts, **kwargs: Any):
        return self._module.generate(prompts, **kwargs)

    def site(self, name: str):
        """The Envoy of the module carrying canonical site `name` (read `.output`, or `.input` for input sites)."""
        site = self._module.site(name)
        env = self.model
        for part in site.module_path.split("."):
            env = env[int(part)] if part.isdigit() else getattr(env, part)
        return env
