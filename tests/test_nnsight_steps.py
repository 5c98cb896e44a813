"""nnsight (issue 25, point 6): `env.step_info` is the iteration's step from the first line of a `tracer.iter` body,
and `env.cache(tracer, sites)` is nnsight's cache keyed by canonical site names, equal to `cache_steps`."""

import nnsight
import pytest
import torch

from mdm_lens.nnsight_interop import MDMEnvelope
from test_nnsight import GEN, PROMPTS, SITE, _model


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_step_info_is_valid_at_the_start_of_each_iteration(family):
    model = _model(family)
    env = MDMEnvelope(model)
    with env.generate(PROMPTS, **GEN[family]) as tracer:
        seen = nnsight.save([])
        for step in tracer.iter[0:3]:
            info = env.step_info  # first line: no module touched yet in this iteration
            seen.append((step, info.step, info.num_steps))
            env.act(SITE)
            seen.append((step, env.step_info.step, None))
    n = GEN[family]["steps"]
    assert seen == [(0, 0, n), (0, 0, None), (1, 1, n), (1, 1, None), (2, 2, n), (2, 2, None)]
    with env.generate(PROMPTS, **GEN[family]) as tracer:
        late = nnsight.save([])
        for _ in tracer.iter[2:4]:  # a loop that starts past step 0
            late.append(env.step_info.step)
    assert late == [2, 3] and model.step_info is None


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_cache_is_keyed_by_canonical_site_names(family):
    model = _model(family)
    env = MDMEnvelope(model)
    sites = [SITE, "blocks.0.mlp.hook_out", "hook_embed"]  # an alias among them
    with env.generate(PROMPTS, **GEN[family]) as tracer:
        cache = env.cache(tracer, sites)
    with model.cache_steps(sites) as ref:
        model.generate(PROMPTS, **GEN[family])
    assert cache.keys() == [SITE, "blocks.0.hook_mlp_out", "hook_embed"]
    assert "blocks.0.mlp.hook_out" in cache and "blocks.1.hook_mlp_out" not in cache
    for name in sites:
        per_step = cache[name]
        assert len(per_step) == GEN[family]["steps"]
        for i, act in enumerate(per_step):
            assert torch.equal(act, ref[name, i]), (name, i)
    with pytest.raises(KeyError, match="not cached"):
        cache["blocks.1.hook_mlp_out"]
    with pytest.raises(ValueError, match="cache_steps"):
        with env.generate(PROMPTS, **GEN[family]) as tracer:
            env.cache(tracer, ["embed.hook_in"])
