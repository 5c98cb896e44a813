"""Explicit sampler arguments name the run (issue 25, point 5): a group of options the caller touches takes no
recommended value, so `model.generate(**kw)` equals the reference sampler called with the same keywords; the
samplers take the model's own mask id."""

import pytest
import torch

from mdm_lens.generation import SETTING_GROUPS
from mdm_lens.sampling import dream_generate, llada_generate


def test_dream_recommended_settings_apply_per_group(tiny_dream):
    full = tiny_dream.sampler_settings()
    assert full["top_p"] == 0.95 and full["temperature"] == 0.2  # nothing passed: Dream's recommended call
    greedy = tiny_dream.sampler_settings(temperature=0.0, alg="entropy")
    assert greedy["temperature"] == 0.0 and "top_p" not in greedy and "top_k" not in greedy
    assert greedy["alg"] == "entropy" and "alg_temp" not in greedy
    assert greedy["steps"] == full["steps"]  # untouched keys keep the recommendation
    assert ("temperature", "top_p", "top_k") in SETTING_GROUPS["dream"]


def test_dream_generate_equals_the_reference_call_with_the_same_keywords(tiny_dream):
    kw = dict(max_new_tokens=8, steps=4, temperature=0.0, alg="entropy")
    out = tiny_dream.generate(["hello world"], chat=False, **kw)
    ids = tiny_dream.to_tokens("hello world")
    ref = dream_generate(tiny_dream, ids, **kw)  # no mask_token_id: the model's own
    assert torch.equal(out.sequences, ref)
    # the old merge (recommended top_p=0.95 beside temperature=0) reorders what is unmasked on this input
    merged = dream_generate(tiny_dream, ids, top_p=0.95, **kw)
    assert not torch.equal(merged, ref)


def test_samplers_take_the_models_mask_id(tiny_dream, tiny_llada):
    ids = tiny_dream.to_tokens("hello")
    x = dream_generate(tiny_dream, ids, max_new_tokens=4, steps=2)  # Dream-7B's 151666 would index past 320
    assert x.shape == (1, ids.shape[1] + 4) and not bool((x == tiny_dream.mask_id).any())
    ids = tiny_llada.to_tokens("hello")
    x = llada_generate(tiny_llada, ids, gen_length=4, steps=4, block_length=4)
    assert not bool((x == tiny_llada.mask_id).any())
    with pytest.raises(IndexError):  # a bare callable still gets the reference checkpoint's id
        dream_generate(lambda x, attention_mask=None: tiny_dream(x), ids, max_new_tokens=2, steps=1)
