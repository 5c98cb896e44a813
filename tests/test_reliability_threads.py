"""Issue 10, shared state: one generation (or set of hooks) per model at a time across threads, never a silent
mix; `generate(seed=)` runs in its own RNG scope and stays token-equal to the reference sampler."""

from __future__ import annotations

import threading

import pytest
import torch

from interventions import AffineMap, Plan, fold
from mdm_lens import HookedMDM
from mdm_lens.sampling import llada_generate
from mdm_lens.testing import tiny_config

SITE = "blocks.1.mlp.hook_out"
SMALL = dict(gen_length=8, steps=8, block_length=4)
IDS = torch.tensor([[5, 6, 7, 8]])


def _in_thread(fn, name: str) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # reported to the main thread by the test
            box["error"] = e

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t, box


def test_second_thread_is_refused_while_a_generation_runs(tiny_llada):
    inside, release = threading.Event(), threading.Event()
    steps_seen = []

    def hold(act, ctx):
        steps_seen.append(ctx.step)
        if ctx.step == 2:
            inside.set()
            assert release.wait(60)
        return act * 1.5

    def generation_a():
        with tiny_llada.hooks({SITE: hold}):
            return tiny_llada.generate(["hello world"], temperature=1.0, seed=11, **SMALL)

    thread, box = _in_thread(generation_a, "gen-A")
    assert inside.wait(60)
    busy = r"refused: this model is in use by thread 'gen-A' \((generating|hooks attached)\); .*one generation"
    with pytest.raises(RuntimeError, match="a generation " + busy):
        tiny_llada.generate(["other"], **SMALL)
    with pytest.raises(RuntimeError, match="a forward " + busy):
        tiny_llada(IDS)
    with pytest.raises(RuntimeError, match="attaching hooks " + busy):
        with tiny_llada.hooks({SITE: lambda a, c: None}):
            pass
    before = {k: v.clone() for k, v in tiny_llada.state_dict().items()}
    with pytest.raises(RuntimeError, match="folding a plan " + busy):
        fold(tiny_llada, Plan({SITE: AffineMap(64, "scalar", torch.tensor(2.0, dtype=torch.float64))}))
    assert not tiny_llada.folded and all(torch.equal(before[k], v) for k, v in tiny_llada.state_dict().items())
    release.set()
    thread.join(60)
    assert "error" not in box, box.get("error")
    assert steps_seen == list(range(8))  # A's hook saw only A's steps, in order
    alone = []
    with tiny_llada.hooks({SITE: lambda a, c: (alone.append(c.step), a * 1.5)[1]}):
        ref = tiny_llada.generate(["hello world"], temperature=1.0, seed=11, **SMALL)
    assert torch.equal(box["value"].tokens, ref.tokens)  # A's result is the single-thread result
    assert tiny_llada.generate(["other"], **SMALL).tokens.shape == (1, 8)  # the model is free again


def test_plain_forwards_may_overlap_but_block_hooks():
    inside, release = threading.Event(), threading.Event()
    model = HookedMDM.from_config(tiny_config("llada"))
    expected = model(IDS)
    embed = model.model.get_input_embeddings()

    def slow(module, args, out):
        if threading.current_thread().name == "fwd-A":
            inside.set()
            assert release.wait(60)

    handle = embed.register_forward_hook(slow)  # torch hook: stalls thread A mid-forward
    try:
        thread, box = _in_thread(lambda: model(IDS), "fwd-A")
        assert inside.wait(60)
        torch.testing.assert_close(model(IDS), expected)  # another plain forward runs meanwhile
        with pytest.raises(RuntimeError, match=r"attaching hooks refused: .*thread 'fwd-A' \(running a forward\)"):
            with model.hooks({SITE: lambda a, c: None}):
                pass
        release.set()
        thread.join(60)
    finally:
        handle.remove()
    torch.testing.assert_close(box["value"], expected)


def test_seeded_generate_leaves_the_global_rng_alone(tiny_llada):
    torch.manual_seed(123)
    want = torch.rand(4)
    torch.manual_seed(123)
    tiny_llada.generate(["hello"], temperature=1.0, seed=5, **SMALL)
    assert torch.equal(torch.rand(4), want)


def test_nested_seeded_generate_does_not_change_the_outer_run(tiny_llada):
    def outer(nest: bool):
        done = []

        def hook(act, ctx):
            if nest and ctx.step == 3 and not done:
                done.append(None)  # the inner run meets this hook too: nest once
                done[0] = tiny_llada.generate(["inner"], temperature=1.0, seed=99, **SMALL)

        with tiny_llada.hooks({SITE: hook}):
            out = tiny_llada.generate(["hello world"], temperature=1.0, seed=7, **SMALL)
        return out, done

    plain, _ = outer(False)
    nested, inner = outer(True)
    assert torch.equal(plain.tokens, nested.tokens)
    assert inner[0].tokens.shape == (1, 8)


def test_seeded_generate_equals_the_reference_sampler_seeded_globally(tiny_llada):
    out = tiny_llada.generate(IDS, temperature=1.0, seed=3, **SMALL)
    torch.manual_seed(3)
    with torch.no_grad():
        ref = llada_generate(tiny_llada, IDS, mask_id=tiny_llada.mask_id, temperature=1.0, **SMALL)
    assert torch.equal(out.sequences, ref)
