"""Issue 20, points 3, 7, 9, 12, 15: a deep copy is a clean model; scopes under the KV cache are absent (never
an exact 0) with the cache named; collect refuses steps that never ran; a trimmed step-cache index is refused."""

import copy
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mdm_lens.cache import StepCache
from mdm_lens.collect import collect, collect_by_step
from mdm_lens.sampling.common import StepInfo

SITE = "blocks.0.hook_resid_post"
FAST = dict(sampler="fast", steps=4, gen_length=8, block_length=4)


def test_deepcopy_inside_hooks_is_clean_and_generates(tiny_llada):
    calls = []
    with tiny_llada.hooks({SITE: lambda a, c: calls.append(1)}):
        twin = copy.deepcopy(tiny_llada)
    assert not twin.hooks_attached and twin.step_info is None
    n = len(calls)
    out = twin.generate([[5, 6, 7]], steps=2, gen_length=2, block_length=2)
    assert out.tokens.shape == (1, 2) and len(calls) == n  # the copy runs none of the original's hooks
    assert all(torch.equal(p, q) for p, q in zip(twin.parameters(), tiny_llada.parameters()))


def test_deepcopy_during_another_threads_generation_has_no_step(tiny_llada):
    with tiny_llada.step_clock.running() as tick:  # what a generation in another thread leaves on the clock
        tick(StepInfo(2, 8, 0, 1, 3, 8, "llada"))
        twin = copy.deepcopy(tiny_llada)
    assert twin.step_info is None
    with twin.cache_steps([SITE]) as c:
        twin(torch.tensor([[5, 6, 7]]))
    assert c.steps == [None]  # a plain forward, not "step 2"


def test_kv_cached_forwards_that_compute_no_prompt_position_are_absent(tiny_llada):
    with tiny_llada.cache_steps([SITE], reduce="mean", scope="prompt") as c:
        tiny_llada.generate([[5, 6, 7]], **FAST)
    assert c.absent and all(bool(v.abs().sum() > 0) for v in c.store.values())  # no exact 0 stored
    step = sorted(s for _, s in c.absent)[0]
    with pytest.raises(
        KeyError,
        match=r"scope 'prompt' had no computed position at step\(s\) \[\d\] because a "
        r"KV-cached forward computes only ctx.computed columns",
    ):
        c[SITE, step]
    with tiny_llada.cache_steps([SITE]) as full:
        tiny_llada.generate([[5, 6, 7]], **FAST)
    with pytest.raises(ValueError, match=r"cannot stack .* the shapes differ"):
        full.stack(SITE)


def test_collect_prompt_scope_under_the_cache_names_the_cache(tiny_llada):
    with pytest.raises(ValueError, match=r"scope 'prompt' selects no position any forward computed: a KV-cached"):
        collect(tiny_llada, [[5, 6, 7]], [SITE], scope="prompt", at_steps=[1], progress=False, **FAST)


def test_collect_refuses_steps_that_never_ran(tiny_llada):
    with pytest.raises(ValueError, match=r"steps \[99\] never ran: the sampler ran steps 0..7"):
        collect(
            tiny_llada, [[5, 6, 7]], [SITE], at_steps=[1, 99], steps=8, gen_length=8, block_length=8, progress=False
        )
    with pytest.raises(ValueError, match=r"batch_size=0: must be an int >= 1"):
        collect_by_step(tiny_llada, [[5, 6, 7]], [SITE], at_steps=[1], batch_size=0, progress=False)


def test_trimmed_step_cache_index_is_refused(tiny_llada, tmp_path):
    with tiny_llada.cache_steps([SITE], reduce="mean") as c:
        tiny_llada.generate([[5, 6, 7]], steps=4, gen_length=4, block_length=4)
    path = tmp_path / "c.safetensors"
    c.save(path)
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["index"] = json.dumps(json.loads(meta["index"])[:1])
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match=r"its index lists 1 tensors but the file holds 4"):
        StepCache.load(path)
