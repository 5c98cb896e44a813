"""Reference alignment (ILRR): s = 0 is no steering; s > 0 pulls toward the reference, one extra row."""

import torch

from interventions import Plan, ReferenceAlignment

KW = dict(gen_length=8, steps=8, block_length=8)
SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def test_zero_strength_equals_unsteered(tiny_llada):
    ref = tiny_llada.tokenizer("the cat is good", add_special_tokens=False)["input_ids"]
    base = tiny_llada.generate(["hello world", "a dog"], **KW)
    out = tiny_llada.generate(["hello world", "a dog"], plan=Plan.of(ReferenceAlignment(ref, SITES, s=0.0)), **KW)
    assert torch.equal(base.tokens, out.tokens)


def test_alignment_pulls_toward_reference(tiny_llada):
    ref = tiny_llada.tokenizer("the cat is good and the dog is good", add_special_tokens=False)["input_ids"]
    rows, gaps = [], {}

    def spy(tag):
        def fn(act, ctx):
            rows.append(act.shape[0])
            if act.shape[0] > ctx.main_rows and ctx.step == 2:
                plen = ctx.prompt_length
                gaps[tag] = float((act[:1, plen:].mean(1) - act[1:2, plen:].mean(1)).norm())

        return fn

    ra = ReferenceAlignment(ref, ["blocks.0.hook_resid_post"], s=1.0, pooling="mean", profile="flat")
    with tiny_llada.steer(Plan.of(ra)):
        with tiny_llada.hooks({"blocks.0.hook_resid_post": spy("after"), "blocks.0.hook_resid_mid": spy("before")}):
            tiny_llada.generate(["hello world"], **KW)
    assert set(rows) == {2}  # one extra row at every step
    assert gaps["after"] < 1e-4 < gaps["before"]  # s = 1, flat profile, mean pooling: pooled gap closed
