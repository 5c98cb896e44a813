"""Schedule replay (mdm_lens.sampling.replay): a replay with no intervention is token-equal to the run it replays
(LLaDA, Dream, both fast samplers, sampled and greedy); under an intervention an order replay keeps the replayed
run's positions step for step while its tokens move, and a teacher replay keeps its tokens too."""

import pytest
import torch

from mdm_lens.sampling.replay import Schedule

CASES = {
    "llada": dict(gen_length=8, steps=8, block_length=4, temperature=0.7),
    "llada_greedy_random": dict(gen_length=8, steps=4, block_length=8, remasking="random"),
    "dream": dict(max_new_tokens=8, steps=6, temperature=0.7, alg="maskgit_plus"),
    "dream_origin": dict(max_new_tokens=8, steps=5, temperature=0.7, alg="origin"),
    "dream_alg_temp": dict(max_new_tokens=8, steps=4, temperature=0.5, alg="entropy", alg_temp=0.3),
}
FAST = {
    "llada": [
        dict(gen_length=8, steps=4, block_length=4, cache="dual"),
        dict(gen_length=8, steps=4, block_length=4, cache="prefix", temperature=0.7),
        dict(gen_length=8, steps=8, block_length=4, cache="none", threshold=0.3),
    ],
    "dream": [
        dict(max_new_tokens=8, steps=4, block_length=4, cache="prefix", temperature=0.7),
        dict(max_new_tokens=8, steps=4, block_length=4, cache="dual", threshold=0.2),
    ],
}
PROMPTS = ["hello world", "the cat sat on the mat"]


def _noise(scale):
    def fn(act, ctx):
        g = torch.Generator().manual_seed(ctx.step)
        return act + scale * torch.randn(act.shape, generator=g).to(act.dtype)

    return {"blocks.0.hook_resid_post": fn}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["order", "teacher"])
def test_replay_without_intervention_is_token_equal(case, mode, request):
    model = request.getfixturevalue("tiny_" + case.split("_")[0])
    out = model.generate(PROMPTS, seed=3, **CASES[case])
    again = model.generate(PROMPTS, seed=3, replay=out, replay_mode=mode, **CASES[case])
    assert torch.equal(again.sequences, out.sequences)
    assert torch.equal(again.decode_step, out.decode_step)


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("i", [0, 1, 2])
def test_fast_replay_is_token_equal(family, i, request):
    if i >= len(FAST[family]):
        pytest.skip("no such case")
    model = request.getfixturevalue("tiny_" + family)
    prompts = PROMPTS if family == "llada" else torch.tensor([[5, 6, 7], [8, 9, 10]])  # Dream fast: one length
    kw = FAST[family][i]
    out = model.generate(prompts, seed=5, sampler="fast", **kw)
    for mode in ("order", "teacher"):
        again = model.generate(prompts, seed=5, sampler="fast", replay=out, replay_mode=mode, **kw)
        assert torch.equal(again.sequences, out.sequences)
        assert torch.equal(again.decode_step, out.decode_step)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_replay_under_intervention_keeps_the_schedule(family, request):
    """Without replay a perturbed run unmasks elsewhere (so the check below can fail); with an order replay it
    unmasks the same positions at the same steps with other tokens; a teacher replay writes the same tokens."""
    model = request.getfixturevalue("tiny_" + family)
    kw = CASES[family]
    out = model.generate(PROMPTS, seed=3, **kw)
    with model.hooks(_noise(3.0)):
        free = model.generate(PROMPTS, seed=3, **kw)
        order = model.generate(PROMPTS, seed=3, replay=out, **kw)
        teacher = model.generate(PROMPTS, seed=3, replay=Schedule.from_output(out), replay_mode="teacher", **kw)
    assert not torch.equal(free.decode_step, out.decode_step)
    assert torch.equal(order.decode_step, out.decode_step)
    assert not torch.equal(order.tokens, out.tokens)
    assert torch.equal(teacher.tokens, out.tokens) and torch.equal(teacher.decode_step, out.decode_step)


def test_replay_errors_name_the_fix(tiny_llada):
    kw = CASES["llada"]
    out = tiny_llada.generate(PROMPTS, seed=3, **kw)
    with pytest.raises(ValueError, match="replay_mode='both'"):
        tiny_llada.generate(PROMPTS, replay=out, replay_mode="both", **kw)
    with pytest.raises(ValueError, match="2 rows, the prompts 1"):
        tiny_llada.generate(PROMPTS[:1], replay=out, **kw)
    with pytest.raises(ValueError, match="covers 8 response positions, this run generates 12"):
        tiny_llada.generate(PROMPTS, replay=out, **{**kw, "gen_length": 12, "block_length": 4, "steps": 12})
    with pytest.raises(ValueError, match="steps=4"):
        tiny_llada.generate(PROMPTS, replay=out, **{**kw, "steps": 4})
    with pytest.raises(TypeError, match="GenerationOutput"):
        tiny_llada.generate(PROMPTS, replay=out.tokens, **kw)
