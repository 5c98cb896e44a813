"""nnsight 0.8: reading and editing sites at chosen denoising steps equals the mdm_lens hooks."""

import nnsight
import pytest
import torch

from mdm_lens import HookedMDM
from mdm_lens.testing import build_test_tokenizer, tiny_config
from mdm_lens.nnsight_interop import MDMEnvelope

SITE = "blocks.1.hook_resid_post"
PROMPTS = ["hello world", "the cat"]
GEN = {"llada": {"gen_length": 8, "steps": 8, "block_length": 4}, "dream": {"max_new_tokens": 8, "steps": 4, "seed": 0}}


def _model(family):
    """A private tiny model: MDMEnvelope instruments modules in place, so keep it off the shared fixtures."""
    cfg = tiny_config(family)
    model = HookedMDM.from_config(cfg, tokenizer=build_test_tokenizer(style=family, vocab_size=cfg["vocab_size"]))
    with torch.no_grad():  # a random model may predict [MASK] and never unmask
        model.model.get_submodule(model.site("hook_logits").linear).weight[model.mask_id] = 0
    return model.eval()


@pytest.fixture(scope="module")
def llada():
    return _model("llada")


def _zero_at(step, rows=None):
    def fn(act, ctx):
        if ctx.step != step:
            return None
        out = act.clone()
        out[slice(None) if rows is None else rows] = 0
        return out

    return fn


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_saved_steps_equal_step_cache(family, request):
    model = request.getfixturevalue("llada") if family == "llada" else _model("dream")
    env, kw = MDMEnvelope(model), GEN[family]
    with env.generate(PROMPTS, **kw) as tracer:
        saved = nnsight.save([])
        for step in tracer.iter[1:3]:
            saved.append(env.act(SITE).save())
        out = tracer.result.save()
    with model.cache_steps([SITE]) as cache:
        ref = model.generate(PROMPTS, **kw)
    assert len(saved) == 2
    for i, s in enumerate(saved):
        assert torch.equal(s, cache[SITE, i + 1])
    assert torch.equal(out.tokens, ref.tokens)


@pytest.mark.parametrize("how", ["in_place", "set_act"])
def test_edit_at_one_step_equals_hook_edit(llada, how):
    env, kw = MDMEnvelope(llada), GEN["llada"]
    with env.generate(PROMPTS, **kw) as tracer:
        seen, before = nnsight.save([]), nnsight.save([])
        for step in tracer.iter[2:5]:
            h = env.act(SITE)
            seen.append(env.step_info.step)
            before.append(h.clone().save())
            if step == 3:
                if how == "in_place":
                    h[:] = 0
                else:
                    env.set_act(SITE, torch.zeros_like(h))
                edited_logits = env.act("hook_logits").save()
        out = tracer.result.save()
    logits = {}
    spy = {"hook_logits": lambda a, ctx: logits.__setitem__(ctx.step, a.clone())}
    with llada.hooks({SITE: _zero_at(3), **spy}):
        ref = llada.generate(PROMPTS, **kw)
    assert seen == [2, 3, 4]
    assert torch.equal(out.tokens, ref.tokens)
    torch.testing.assert_close(edited_logits, logits[3])
    with llada.hooks(spy):
        llada.generate(PROMPTS, **kw)
    assert not torch.allclose(edited_logits, logits[3])  # the edit did change step 3
    assert before[1].abs().sum() > 0  # saved before the edit


def test_invokes_scope_rows(llada):
    """Two invokes batch into one generation; an edit in the second touches only its row."""
    env, kw = MDMEnvelope(llada), GEN["llada"]
    with env.generate(**kw) as tracer:
        with tracer.invoke(PROMPTS[0]):
            first = env.act(SITE).save()
        with tracer.invoke([PROMPTS[1]]):
            for step in tracer.iter[3]:
                env.act(SITE)[:] = 0
            out = tracer.result.save()
    with llada.hooks({SITE: _zero_at(3, rows=1)}):
        ref = llada.generate(PROMPTS, **kw)
    assert first.shape[0] == 1
    assert torch.equal(out.tokens, ref.tokens)
    with pytest.raises(NotImplementedError, match="cfg_scale"), env.generate(cfg_scale=1.0, **kw) as tracer:
        with tracer.invoke(PROMPTS[0]):
            env.act(SITE).save()
        with tracer.invoke(PROMPTS[1]):
            env.act(SITE).save()


def test_plain_trace(llada):
    env = MDMEnvelope(llada)
    ids = torch.randint(0, 250, (2, 6))
    with env.trace(ids):
        h = env.site("blocks.0.mlp.hook_out").output.save()
        logits = env.output.save()
    _, cache = llada.run_with_cache(ids, ["blocks.0.mlp.hook_out"])
    assert torch.equal(h, cache["blocks.0.mlp.hook_out"])
    torch.testing.assert_close(logits, llada(ids))
    with env.trace() as tracer:
        with tracer.invoke(ids[:1]):
            a = env.act("hook_logits").save()
        with tracer.invoke(ids[1:]):
            b = env.act("hook_logits").save()
    torch.testing.assert_close(torch.cat([a, b]), logits)


def test_cfg_from_checkpoint_config_is_refused_too(llada):
    """The envelope reads the same merged settings as generate: a config-level cfg_scale counts."""
    env, kw = MDMEnvelope(llada), GEN["llada"]
    llada.config["mdm_lens_sampler"] = {"cfg_scale": 1.0}
    try:
        assert llada.sampler_settings(**kw)["cfg_scale"] == 1.0
        with pytest.raises(NotImplementedError, match="cfg_scale"), env.generate(**kw) as tracer:
            with tracer.invoke(PROMPTS[0]):
                env.act(SITE).save()
            with tracer.invoke(PROMPTS[1]):
                env.act(SITE).save()
    finally:
        del llada.config["mdm_lens_sampler"]


def test_step_info_inside_a_trace_is_the_models(llada):
    env, seen = MDMEnvelope(llada), []
    with llada.hooks({SITE: lambda act, ctx: seen.append((ctx.step, ctx.site))}):
        with env.generate(PROMPTS[:1], **GEN["llada"]) as tracer:
            for step in tracer.iter[0:2]:
                env.act(SITE)
    assert seen[:2] == [(0, SITE), (1, SITE)] and llada.step_info is None
