"""The public step clock: hooks see the step however the loop is driven; ctx.site; one scope vocabulary;
one place merges sampler settings."""

import dataclasses

import pytest
import torch

from mdm_lens import StepCache
from mdm_lens.context import SCOPES, StepContext, check_scope
from mdm_lens.sampling import StepInfo, dream_generate, llada_generate

SITE = "blocks.1.hook_resid_post"


def _record(seen):
    def fn(act, ctx):
        seen.append((ctx.step, ctx.num_steps, ctx.block, ctx.t, ctx.info, ctx.site))

    return fn


def test_llada_generate_called_directly_announces_steps(tiny_llada):
    ids = torch.tensor([[5, 6, 7]])
    seen = []
    with tiny_llada.hooks({SITE: _record(seen)}):
        llada_generate(tiny_llada, ids, steps=4, gen_length=8, block_length=4, mask_id=tiny_llada.mask_id)
    assert [s[0] for s in seen] == [0, 1, 2, 3] and {s[1] for s in seen} == {4}
    assert [s[2] for s in seen] == [0, 0, 1, 1]
    assert seen[0][3] == 1.0 and seen[-1][3] == pytest.approx(2 / 8)
    assert all(s[4].sampler == "llada" and s[4].prompt_length == 3 for s in seen)
    assert tiny_llada.step_info is None  # the clock is reset after the loop


def test_dream_generate_called_directly_announces_steps(tiny_dream):
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    seen = []
    with tiny_dream.hooks({SITE: _record(seen)}):
        dream_generate(tiny_dream, ids, max_new_tokens=6, steps=3, mask_token_id=tiny_dream.mask_id)
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][3] == 1.0
    assert all(s[4].sampler == "dream" and s[4].gen_length == 6 for s in seen)
    assert tiny_dream.step_info is None


def test_step_info_is_public_read_only_and_seen_by_augmenters(tiny_llada):
    with pytest.raises(AttributeError):
        tiny_llada.step_info = None
    infos, forwards = [], []

    def aug(ids, mask, pos, info):
        infos.append(info)
        forwards.append(tiny_llada.step_info)
        return None

    with tiny_llada.augment_batch(aug):
        tiny_llada.generate(["hello world"], gen_length=4, steps=2, block_length=4)
        tiny_llada(torch.tensor([[5, 6, 7]]))
    assert [i.step for i in infos[:2]] == [0, 1] and infos[:2] == forwards[:2]
    assert infos[2] is None  # a plain forward has no step


def test_on_step_and_clock_agree_and_clock_restores_on_error(tiny_llada):
    ticks = []

    def boom(info):
        ticks.append(tiny_llada.step_info)
        if info.step == 1:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        llada_generate(
            tiny_llada,
            torch.tensor([[5, 6]]),
            steps=4,
            gen_length=4,
            block_length=4,
            mask_id=tiny_llada.mask_id,
            on_step=boom,
        )
    assert [t.step for t in ticks] == [0, 1] and tiny_llada.step_info is None


def test_computed_columns_reach_the_context(tiny_llada):
    """A KV-cached sampler announces which columns a forward computes; hooks read it from ctx.info."""
    seen = []
    info = StepInfo(0, 1, 0, 1, 2, 4, "custom")
    with tiny_llada.hooks({SITE: lambda act, ctx: seen.append(ctx.info.computed)}):
        with tiny_llada.step_clock.running() as announce:
            announce(dataclasses.replace(info, computed=(2, 6)))
            tiny_llada(torch.tensor([[5, 6] + [tiny_llada.mask_id] * 4]))
    assert seen == [(2, 6)]


def test_context_masks_cover_the_computed_columns_only():
    """A cached forward feeds canvas columns [4, 8) of a 2-prompt-column canvas: masks are over those columns."""
    info = StepInfo(3, 8, 1, 2, 2, 8, "llada_dual", computed=(4, 8))
    ids = torch.tensor([[11, 9, 9, 12]])  # 9 = mask id
    am = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])  # canvas-wide, first column padding
    ctx = StepContext(ids, am, 9, prompt_length=None, logits_shift=False, info=info)
    assert ctx.first_column == 4 and ctx.prompt_length == 2
    assert ctx.response_mask.tolist() == [[True] * 4] and ctx.masked.tolist() == [[False, True, True, False]]
    assert not ctx.padding.any() and ctx.t == 0.5
    whole = StepContext(
        torch.tensor([[5, 6, 9, 9]]),
        None,
        9,
        prompt_length=None,
        logits_shift=False,
        info=dataclasses.replace(info, computed=None),
    )
    assert whole.first_column == 0 and whole.response_mask.tolist() == [[False, False, True, True]]


def test_ctx_site_is_the_site_being_called(tiny_llada):
    sites = ["hook_embed", "blocks.0.mlp.hook_out", SITE, "hook_logits"]
    calls = []

    def one_fn(act, ctx):
        calls.append((ctx.site, act.shape[-1]))

    with tiny_llada.hooks({s: [one_fn, one_fn] if s == SITE else one_fn for s in sites}):
        tiny_llada(torch.tensor([[5, 6, 7]]))
    assert [c[0] for c in calls] == [sites[0], sites[1], SITE, SITE, sites[3]]
    assert all(w == tiny_llada.site(s).width for s, w in calls)


def test_run_with_cache_and_cache_steps_key_by_site(tiny_llada):
    names = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"]
    _, cache = tiny_llada.run_with_cache(torch.tensor([[5, 6, 7]]), names)
    assert sorted(cache) == sorted(names) and not torch.equal(cache[names[0]], cache[names[1]])
    with tiny_llada.cache_steps(names, reduce="mean") as steps:
        tiny_llada.generate(["hello"], gen_length=4, steps=2, block_length=4)
    assert isinstance(steps, StepCache) and steps.steps == [0, 1] and len(steps) == 4
    assert not torch.equal(steps[names[0], 0], steps[names[1], 0])
    assert not hasattr(tiny_llada, "generate_with_cache")  # removed: its `steps` filter shadowed the sampler's


@pytest.mark.parametrize("old", ["full", "both"])
def test_old_scope_words_are_refused_naming_all(old, tiny_llada):
    from interventions import MeanACT, Plan, restrict
    from mdm_lens.collect import collect

    with pytest.raises(ValueError, match='"all"'):
        check_scope(old)
    with pytest.raises(ValueError, match="all"):
        StepCache([SITE], scope=old)
    m = MeanACT.fit(torch.zeros(3, 64, dtype=torch.float64), torch.ones(3, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="all"):
        restrict(m, scope=old)
    with pytest.raises(ValueError, match="all"):
        Plan({SITE: m}).scope(old)
    with pytest.raises(ValueError, match="all"):
        collect(tiny_llada, ["hi"], [SITE], scope=old, progress=False)
    ctx = StepContext(torch.tensor([[1, 2]]), None, 9, prompt_length=1, logits_shift=False)
    with pytest.raises(ValueError, match="all"):
        ctx.scope_mask(old)
    assert SCOPES == ("all", "prompt", "response", "masked", "predicts_masked", "padding")


def test_sampler_settings_are_merged_in_one_place(tiny_llada, tiny_dream):
    saved = dict(tiny_llada.config)
    try:
        tiny_llada.config["mdm_lens_sampler"] = {"steps": 6, "gen_length": 12}
        merged = tiny_llada.sampler_settings(steps=2)
        assert merged["steps"] == 2 and merged["gen_length"] == 12
        assert {k: v for k, v in merged.items() if k not in ("steps", "gen_length")} == {
            k: v for k, v in tiny_llada.spec.recommended.items() if k not in ("steps", "gen_length")
        }
        assert tiny_llada.default_gen_length == 12
        seen = []
        with tiny_llada.hooks({SITE: lambda a, c: seen.append(c.info)}):
            tiny_llada.generate(["hi"], block_length=12)
        assert seen[0].num_steps == 6 and seen[0].gen_length == 12
    finally:
        tiny_llada.config.clear()
        tiny_llada.config.update(saved)
    assert tiny_llada.spec.length_key == "gen_length" and tiny_dream.spec.length_key == "max_new_tokens"
    assert tiny_dream.default_gen_length == int(tiny_dream.spec.recommended["max_new_tokens"])


def test_masked_batch_is_the_t1_canvas(tiny_llada):
    ids, attn, plen = tiny_llada.masked_batch(["hello world", "a"], gen_length=5)
    assert ids.shape[1] == plen + 5 and (ids[:, plen:] == tiny_llada.mask_id).all()
    assert not (ids[:, :plen] == tiny_llada.mask_id).any()
    assert attn is not None and attn[:, plen:].all() and not attn[1, 0]  # "a" is left-padded
    with pytest.raises(ValueError, match="gen_length"):
        tiny_llada.masked_batch(["hi"], gen_length=0)


def test_no_code_outside_the_core_touches_hookedmdm_privates(tiny_llada):
    """interventions/, analyses/ and examples/ use the public surface (step_info, step_clock, hooks, ...)."""
    import ast
    from pathlib import Path

    from torch import nn

    root = Path(__file__).resolve().parents[1]
    private = {n for n in [*vars(tiny_llada), *dir(type(tiny_llada))] if n.startswith("_") and not n.startswith("__")}
    private -= {n for n in [*vars(nn.Module()), *dir(nn.Module)]}
    assert {"_ctx", "_n_hooks", "_augmenters"} <= private
    hits = []
    for folder in ("interventions", "analyses", "examples"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in private
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")
                ):
                    hits.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    assert hits == []
