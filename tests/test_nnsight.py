"""nnsight 0.8: reading and editing a site at chosen denoising steps equals the mdm_lens hooks."""
import torch

from mdm_lens.nnsight_interop import MDMEnvelope

SITE = "blocks.1.hook_resid_post"
KW = dict(gen_length=8, steps=8, block_length=8)


def test_saved_steps_equal_step_cache(tiny_llada):
    env = MDMEnvelope(tiny_llada)
    saved = []
    with env.generate(["hello world", "the cat"], **KW) as tracer:
        blk = env.site(SITE)
        for _ in tracer.iter[2:5]:
            saved.append(blk.output.save())
        out = tracer.result.save()
    with tiny_llada.cache_steps([SITE]) as cache:
        ref = tiny_llada.generate(["hello world", "the cat"], **KW)
    assert len(saved) == 3
    for i, s in enumerate(saved):
        assert torch.equal(s, cache[SITE, i + 2])
    assert torch.equal(out.tokens, ref.tokens)


def test_edit_at_one_step_equals_hook_edit(tiny_llada):
    env = MDMEnvelope(tiny_llada)
    with env.generate(["hello world"], **KW) as tracer:
        blk, head = env.site(SITE), env.site("hook_logits")
        for _ in tracer.iter[3]:
            blk.output[:] = 0
            edited_logits = head.output.save()
        out = tracer.result.save()
    logits = {}
    spy = {"hook_logits": lambda a, ctx: logits.__setitem__(ctx.step, a.clone())}
    with tiny_llada.hooks({SITE: lambda a, ctx: torch.zeros_like(a) if ctx.step == 3 else None, **spy}):
        ref = tiny_llada.generate(["hello world"], **KW)
    ref_logits = logits[3]
    with tiny_llada.hooks(spy):
        tiny_llada.generate(["hello world"], **KW)
    assert torch.equal(out.tokens, ref.tokens)
    torch.testing.assert_close(edited_logits, ref_logits)
    assert not torch.allclose(edited_logits, logits[3])          # the edit did change step 3


def test_plain_trace(tiny_llada):
    env = MDMEnvelope(tiny_llada)
    ids = torch.randint(0, 250, (1, 6))
    with env.trace(ids):
        h = env.site("blocks.0.mlp.hook_out").output.save()
        logits = env.output.save()
    _, cache = tiny_llada.run_with_cache(ids, ["blocks.0.mlp.hook_out"])
    assert torch.equal(h, cache["blocks.0.mlp.hook_out"])
    torch.testing.assert_close(logits, tiny_llada(ids))
