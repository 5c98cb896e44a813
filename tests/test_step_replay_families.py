"""The per-step logit lens, the trace viewer and `replay=` on the late-2026 families: full-bidirectional samplers
(LLaDA-MoE, A2D under MDLM) are replayed and the lens equals the sampler's own activations; block diffusion
(LLaDA2, A2D under BD3LM) is refused with the reason; `replay=` gives each refused family its own reason."""

import pytest
import torch

from analyses.logit_lens import logit_lens
from analyses.view import trace_generation
from mdm_lens.testing import tiny_model

SETTINGS = {
    "lladamoe": dict(gen_length=8, steps=8, block_length=4, temperature=0.0),
    "a2d_qwen3": dict(max_new_tokens=8, steps=8, block_size=4, temperature=0.0),
    "a2d_llama": dict(max_new_tokens=8, steps=8, block_size=8, temperature=0.0, right_shift_logits=True),
}


@pytest.fixture(scope="module")
def models():
    return {}


def _model(models, family):
    if family not in models:
        models[family] = tiny_model(family)
    return models[family]


@pytest.mark.parametrize("family", list(SETTINGS))
def test_lens_equals_the_sampler_own_activations(family, models):
    model = _model(models, family)
    prompts = ["hello world", "the cat sat on the mat"]  # unequal lengths: MDLM right-pads, the lens left-pads
    kw = SETTINGS[family]
    last = model.n_layers - 1
    with model.cache_steps([f"blocks.{last}.hook_resid_post", "hook_logits"]) as cache:
        out = model.generate(prompts, seed=1, **kw)
    res = logit_lens(model, prompts, layers=[last], seed=1, **kw)
    assert res.texts == out.texts and res.records
    shift = 1 if kw.get("right_shift_logits") else 0
    plen = out.prompt_length
    # where response column g of row r sat in the sampler's own canvas: MDLM lays each prompt at column 0
    # (right padding), LLaDA's sampler left-pads as the lens does
    mdlm = model.spec.sampler == "mdlm"
    lens = out.attention_mask.sum(1) if mdlm and out.attention_mask is not None else torch.full((2,), plen)
    for rec in res.records:
        s, r, g = rec["step"], rec["prompt"], rec["position"]
        col = int(lens[r]) + g - shift if mdlm else plen + g - shift
        real = cache["hook_logits", s][r, col].float().softmax(-1)
        # 1e-5: float32 rounding; padding moves absolute RoPE angles, relative ones (what attention sees) are equal
        assert rec["p_final"] == pytest.approx(float(real[rec["final_token"]]), abs=1e-5)
        assert rec["top1_token"] == int(real.argmax())


def test_viewer_topk_equal_the_mdlm_sampler_logits(models):
    model = _model(models, "a2d_qwen3")
    kw = SETTINGS["a2d_qwen3"]
    with model.cache_steps(["hook_logits"]) as cache:
        out = model.generate(["hello world"], seed=3, **kw)
    tr = trace_generation(model, "hello world", seed=3, top_k=4, **kw)
    assert tr.tokens == out.tokens[0].tolist()
    plen, gen = out.prompt_length, out.tokens.shape[1]
    for s in range(tr.n_steps):
        p = cache["hook_logits", s][0, plen : plen + gen].float().softmax(-1)
        v, i = p.topk(4, dim=-1)
        assert torch.equal(tr.topk_ids[s].long(), i)
        assert torch.allclose(tr.topk_probs[s].float(), v, atol=1e-3)  # stored as float16
    assert tr.lens is not None  # the per-layer lens replayed the chosen steps


@pytest.mark.parametrize(
    ("family", "kw"),
    [
        ("llada2", dict(gen_length=8, steps=4, block_length=4)),
        ("a2d_qwen3", dict(variant="bd3lm", max_new_tokens=8, steps=4, block_size=4)),
    ],
)
def test_block_diffusion_is_refused_with_the_reason(family, kw, models):
    model = _model(models, family)
    state = {k: v.clone() for k, v in model.model.state_dict().items()}
    why = rf"{family} family's .* block diffusion: .* block-causal mask .* model\.cache_steps"
    with pytest.raises(NotImplementedError, match=why):
        logit_lens(model, ["hello"], seed=0, **kw)
    with pytest.raises(NotImplementedError, match=why):
        trace_generation(model, "hello", seed=0, **kw)
    assert all(torch.equal(state[k], v) for k, v in model.model.state_dict().items())


@pytest.mark.parametrize(
    ("family", "why"),
    [
        ("a2d_qwen3", "a2d_qwen3 family: dllm's MDLM / BD3LM samplers take no recorded unmasking schedule"),
        ("llada2", "llada2 family: LLaDA2's block-diffusion sampler .* takes no recorded unmasking schedule"),
    ],
)
def test_replay_refusal_names_the_family_own_reason(family, why, models):
    model = _model(models, family)
    with pytest.raises(ValueError, match=why) as err:
        model.generate(["hello"], seed=0, replay=object())
    assert "noise" not in str(err.value) and "lladamoe" in str(err.value)


def test_replayed_run_refuses_block_diffusion(models):
    from analyses.replayed import ReplayedRun

    model = _model(models, "llada2")
    out = model.generate(["hello"], seed=0, gen_length=8, steps=4, block_length=4)
    with pytest.raises(NotImplementedError, match=r"ReplayedRun .* llada2 family's .* block-causal mask"):
        ReplayedRun.of(model, out)
