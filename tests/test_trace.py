"""The decode trace: GenerationOutput.decode_step agrees with the per-step history and with the step clock
(what a step unmasks is exactly what the next step's input shows unmasked for the first time), and recording it
never changes the tokens."""

import pytest
import torch

from mdm_lens.sampling import dream_generate, llada_generate
from mdm_lens.sampling.trace import DecodeTrace

SETTINGS = {
    "llada": dict(gen_length=8, steps=8, block_length=4, temperature=0.7),
    "dream": dict(max_new_tokens=8, steps=6, temperature=0.7, alg="maskgit_plus"),
}


def _inputs_by_step(model):
    """A hook that records the ids each sampler forward reads, by the step the clock announces."""
    seen = {}

    def fn(act, ctx):
        seen[ctx.step] = ctx.input_ids[: ctx.main_rows].detach().clone()

    return seen, {"blocks.0.hook_resid_pre": fn}


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_decode_step_matches_history_and_step_clock(family, request):
    model = request.getfixturevalue(f"tiny_{family}")
    prompts = ["hello world", "the cat sat on the mat"]  # unequal lengths: a left-padded batch
    plain = model.generate(prompts, seed=3, **SETTINGS[family])
    seen, hooks = _inputs_by_step(model)
    with model.hooks(hooks):
        out = model.generate(prompts, seed=3, return_history=True, **SETTINGS[family])
    assert torch.equal(out.tokens, plain.tokens)  # the trace never changes tokens
    assert torch.equal(out.decode_step, plain.decode_step)
    steps, plen = SETTINGS[family]["steps"], out.prompt_length
    dec, hist = out.decode_step, out.history
    assert dec.shape == out.tokens.shape and hist.shape == (steps, *out.tokens.shape)
    assert torch.equal(hist[-1], out.tokens)
    mask = model.mask_id
    before = torch.full_like(hist[0], mask)
    for s in range(steps):
        newly = (before == mask) & (hist[s] != mask)
        assert torch.equal(newly, dec == s), f"step {s}: history and decode_step disagree"
        before = hist[s]
    assert torch.equal(dec == -1, out.tokens == mask)  # never decoded = still masked at the end
    assert ((dec >= 0) & (dec < steps)).logical_or(dec == -1).all()
    assert (dec >= 0).sum() > 0 and len(set(dec[dec >= 0].tolist())) > 1  # decoded over several steps
    # the step clock: positions unmasked at step s are exactly those first non-mask in step s+1's input
    assert sorted(seen) == list(range(steps))
    for s in range(steps - 1):
        nxt, cur = seen[s + 1][:, plen:], seen[s][:, plen:]
        assert torch.equal((cur == mask) & (nxt != mask), dec == s)
        assert torch.equal(nxt, hist[s])


def test_llada_sampler_trace_and_history_direct(tiny_llada):
    ids = torch.tensor([[5, 6, 7]])
    kw = dict(steps=4, gen_length=8, block_length=4, mask_id=tiny_llada.mask_id)
    ref = llada_generate(tiny_llada, ids, **kw)
    x, history = llada_generate(tiny_llada, ids, return_history=True, **kw)
    trace = DecodeTrace(tiny_llada.mask_id)
    y = llada_generate(tiny_llada, ids, trace=trace, **kw)
    assert torch.equal(ref, x) and torch.equal(ref, y) and len(history) == 4
    assert (trace.decode_step[:, :3] == -1).all()  # prompt columns are never decoded
    # low-confidence remasking decodes gen_length / steps positions per step, block by block
    assert sorted(trace.decode_step[0, 3:].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert (trace.decode_step[0, 3:7] <= 1).all() and (trace.decode_step[0, 7:] >= 2).all()


def test_dream_history_unchanged_and_trace_checks(tiny_dream):
    ids = torch.tensor([[5, 6, 7]])
    kw = dict(max_new_tokens=6, steps=3, mask_token_id=tiny_dream.mask_id, alg="entropy")
    x, history = dream_generate(tiny_dream, ids, return_history=True, **kw)
    assert torch.equal(x, dream_generate(tiny_dream, ids, **kw)) and torch.equal(history[-1], x)
    with pytest.raises(ValueError, match="keep_history=True"):
        dream_generate(tiny_dream, ids, return_history=True, trace=DecodeTrace(tiny_dream.mask_id), **kw)
    with pytest.raises(RuntimeError, match="start"):
        DecodeTrace(0).record(0, ids)
