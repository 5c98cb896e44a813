"""Hooks, plans, step caches and per-step effects on the fast (KV-cached) path; the sampler switch."""

import pytest
import torch

from mdm_lens.families.kv_cache import CachedOutput
from mdm_lens.sampling import dream_generate_cached, llada_generate_cached

SITE = "blocks.1.hook_resid_post"
KW = dict(gen_length=16, steps=8, block_length=8)


def _ids(model, n=5):
    return torch.arange(3, 3 + n)[None].to(model.input_device)


def test_forward_passes_the_cache_through(tiny_llada):
    ids = _ids(tiny_llada)
    canvas = torch.cat([ids, torch.full((1, 8), tiny_llada.mask_id)], 1)
    with torch.no_grad():
        out = tiny_llada(canvas, use_cache=True)
        ref = tiny_llada.model(canvas, use_cache=True)
        assert isinstance(out, CachedOutput) and torch.equal(out.logits, ref.logits)
        assert torch.equal(tiny_llada(canvas), ref.logits)  # today's path: logits only
        replace = torch.zeros_like(canvas, dtype=torch.bool)
        replace[:, 5:9] = True
        part = tiny_llada(canvas[:, 5:9], past_key_values=out.past_key_values, replace_position=replace)
    torch.testing.assert_close(part, ref.logits[:, 5:9], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cache", ["dual", "prefix"])
def test_generate_fast_equals_the_cached_sampler(tiny_llada, cache):
    ids = _ids(tiny_llada)
    out = tiny_llada.generate(ids, sampler="fast", cache=cache, chat=False, **KW)
    direct = llada_generate_cached(tiny_llada.model, ids, mask_id=tiny_llada.mask_id, cache=cache, **KW)
    assert torch.equal(out.sequences, direct)
    assert bool((out.decode_step >= 0).all())  # the decode trace covers the fast path too
    ref = tiny_llada.generate(ids, chat=False, **KW)  # the default is still the reference sampler
    assert ref.decode_step.max() == 7


def test_generate_fast_dream_equals_the_cached_sampler(tiny_dream):
    ids = _ids(tiny_dream)
    kw = dict(max_new_tokens=16, steps=8, block_length=8, temperature=0.0)
    out = tiny_dream.generate(ids, sampler="fast", cache="dual", threshold=0.5, chat=False, **kw)
    direct = dream_generate_cached(
        tiny_dream.model,
        ids,
        mask_token_id=tiny_dream.mask_id,
        cache="dual",
        threshold=0.5,
        **{**kw, "alg_temp": 0.0, "top_p": 0.95},
    )
    assert torch.equal(out.sequences, direct)


def test_switch_errors_name_the_fix(tiny_llada):
    ids = _ids(tiny_llada)
    with pytest.raises(ValueError, match="sampler='fastest' is not a sampler"):
        tiny_llada.generate(ids, sampler="fastest", **KW)
    with pytest.raises(ValueError, match="cfg_scale=1.0 is a setting of the reference sampler"):
        tiny_llada.generate(ids, sampler="fast", cfg_scale=1.0, **KW)
    with pytest.raises(TypeError, match=r"unknown sampler option\(s\) \['cache'\]"):
        tiny_llada.generate(ids, cache="dual", **KW)  # fast options need sampler="fast"
    assert tiny_llada.sampler_settings("fast")["cache"] == "dual"
    assert "cache" not in tiny_llada.sampler_settings()


def test_hooks_see_the_computed_columns(tiny_llada):
    ids = _ids(tiny_llada)
    seen = []

    def spy(act, ctx):
        seen.append(
            (
                ctx.info.computed,
                ctx.computed,
                ctx.cached,
                act.shape[1],
                ctx.masked.shape[1],
                int(ctx.response_mask.sum()),
            )
        )

    with tiny_llada.hooks({SITE: spy}):
        tiny_llada.generate(ids, sampler="fast", cache="dual", chat=False, **KW)
    plen, total = 5, 21
    assert len(seen) == 8
    for info_computed, computed, cached, width, mask_width, resp in seen:
        assert width == mask_width == computed[1] - computed[0] == resp + (plen if computed[0] == 0 else 0)
        if info_computed is None:  # the block's full forward
            assert computed == (0, total) and cached == []
        else:
            assert computed == info_computed and computed[1] - computed[0] == 8
            assert cached == [s for s in ((0, computed[0]), (computed[1], total)) if s[1] > s[0]]


def test_the_cache_keeps_steered_keys_and_values(tiny_llada):
    """A hook active only at each block's full forward still changes the cached forwards after it: the cached
    columns carry the keys/values computed under it."""
    ids = _ids(tiny_llada)
    logits = {}

    def run(steer: bool):
        logits.clear()

        def push(act, ctx):
            if steer and ctx.info.computed is None:
                return act + 3.0

        def spy(act, ctx):
            logits[ctx.step] = (ctx.info.computed, act.clone())

        with tiny_llada.hooks({"blocks.0.hook_resid_post": push, "hook_logits": spy}):
            llada_generate_cached(tiny_llada, ids, mask_id=tiny_llada.mask_id, cache="dual", **KW)
        return dict(logits)

    base, steered = run(False), run(True)
    cached_steps = [s for s, (c, _) in base.items() if c is not None]
    assert cached_steps and all(steered[s][0] == base[s][0] for s in cached_steps)
    assert not torch.allclose(steered[cached_steps[0]][1], base[cached_steps[0]][1])


def test_plan_on_the_fast_path_equals_the_sampler_under_steer(tiny_llada):
    from interventions import Plan
    from interventions.estimators import LinearACT

    g = torch.Generator().manual_seed(0)
    d = tiny_llada.site(SITE).width
    a = torch.randn(16, d, generator=g, dtype=torch.float64)
    plan = Plan({SITE: LinearACT.fit(a, a * 1.5 + 0.3)})
    ids = _ids(tiny_llada)
    out = tiny_llada.generate(ids, plan=plan, sampler="fast", chat=False, **KW)
    with tiny_llada.steer(plan):
        direct = llada_generate_cached(tiny_llada, ids, mask_id=tiny_llada.mask_id, cache="dual", **KW)
    assert torch.equal(out.sequences, direct)
    assert not torch.equal(out.sequences, tiny_llada.generate(ids, sampler="fast", chat=False, **KW).sequences)


def test_reference_alignment_is_refused_with_the_reason(tiny_llada):
    from interventions.reference import ReferenceAlignment

    ids = _ids(tiny_llada)
    align = ReferenceAlignment([7, 8, 9], [SITE], s=1.0)
    with pytest.raises(ValueError, match="its extra rows would enter the cache"):
        tiny_llada.generate(ids, plan=align, sampler="fast", chat=False, **KW)
    with tiny_llada.steer(align), pytest.raises(RuntimeError, match="sampler='reference'"):
        llada_generate_cached(tiny_llada, ids, mask_id=tiny_llada.mask_id, cache="dual", **KW)
    tiny_llada.generate(ids, plan=align, chat=False, **KW)  # the reference sampler still takes it


def test_step_cache_on_the_fast_path(tiny_llada):
    ids = _ids(tiny_llada)
    with tiny_llada.cache_steps([SITE]) as full, tiny_llada.cache_steps([SITE], reduce="mean", scope="masked") as red:
        tiny_llada.generate(ids, sampler="fast", cache="dual", chat=False, **KW)
    assert full.steps == list(range(8)) and red.steps == list(range(8))
    widths = [full[SITE, s].shape[1] for s in range(8)]
    assert widths == [21, 8, 8, 8, 21, 8, 8, 8]  # full forward, then the block alone
    assert all(red[SITE, s].shape == (1, tiny_llada.site(SITE).width) for s in range(8))


def test_step_effects_on_the_fast_path(tiny_llada):
    from analyses.effects import step_effects
    from interventions import Plan
    from interventions.estimators import LinearACT

    g = torch.Generator().manual_seed(1)
    d = tiny_llada.site(SITE).width
    a = torch.randn(16, d, generator=g, dtype=torch.float64)
    plan = Plan({SITE: LinearACT.fit(a, a * 2.0 + 0.5)})
    eff = step_effects(tiny_llada, [[3, 4, 5, 6, 7]], plan, sampler="fast", cache="dual", chat=False, **KW)
    assert [r["step"] for r in eff.records] == list(range(8))
    assert all(r[f"delta_norm:{SITE}"] > 0 for r in eff.records)
    assert eff.records[0]["t"] == 1.0 and any(r["kl_masked"] > 0 for r in eff.records)
    assert eff.unmask_step_steer.shape == (1, 16) and int(eff.unmask_step_steer.max()) <= 7


def test_cli_sampler_switch(capsys):
    import json

    from analyses.cli import commands as cli
    from mdm_lens.fast_path import SAMPLERS
    from mdm_lens.sampling.llada_cached import CACHES

    assert cli.SAMPLERS == SAMPLERS and cli.CACHES == CACHES[1:]  # the stdlib-only copies
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "experiment",
            "--model",
            "tiny-if",
            "--out",
            "x",
            "--sampler",
            "fast",
            "--cache",
            "prefix",
            "--threshold",
            "0.9",
        ]
    )
    assert (args.sampler, args.cache, args.threshold) == ("fast", "prefix", 0.9)
    assert parser.parse_args(["bench", "fast"]).what == "fast"
    argv = [
        "generate",
        "--model",
        "tiny-if",
        "--prompt",
        "hello",
        "--gen-length",
        "16",
        "--steps",
        "8",
        "--block-length",
        "8",
        "--no-chat",
    ]
    assert cli.main(argv + ["--sampler", "fast", "--cache", "dual"]) == 0
    fast = json.loads(capsys.readouterr().out.splitlines()[-1])
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained("tiny-if")
    want = model.generate(["hello"], sampler="fast", cache="dual", seed=0, chat=False, **KW).texts[0]
    assert fast == {"prompt": "hello", "response": want}


def test_bench_fast_times_steering_on_the_fast_path(tiny_llada):
    """`hooked_ratio` comes from two extra variants in the same rounds; its value is `mdm-lens bench fast`'s."""
    from analyses.bench.steering import linear_act_everywhere
    from analyses.bench.fast import fast_bench

    plan = linear_act_everywhere(tiny_llada)
    out = fast_bench(
        tiny_llada.model,
        tiny_llada.mask_id,
        gen_length=16,
        block_length=8,
        steps=8,
        prompt_len=4,
        repeats=1,
        hooked=tiny_llada,
        plan=plan,
    )
    assert {"fast_unsteered", "fast_steered"} <= set(out["seconds"]) and out["hooked_ratio"] > 0
    assert out["steered_sites"] == 2 * tiny_llada.n_layers and out["fastest"] != "fast_unsteered"
    assert out["tokens_equal_reference"]["fast_unsteered"] == out["tokens_equal_reference"]["dual"]
