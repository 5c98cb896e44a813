"""Expert usage per denoising step and token scope (analyses.moe_usage) on a tiny random LLaDA-MoE model."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from analyses.moe_usage import collect_expert_usage
from mdm_lens.sites import get_act_name
from mdm_lens.testing import tiny_model

KW = dict(gen_length=8, steps=8, block_length=4)
PROMPTS = ["hello world", "the cat is good"]


@pytest.fixture(scope="module")
def model():
    return tiny_model("lladamoe", seed=0)


def test_counts_match_an_independent_hook_and_sample_sizes(model, tmp_path):
    """Counted inside the hook, the usage equals a plain record of every step's ids and masks; sample sizes
    follow the sampler (steps == gen_length: one position per row is decoded per step)."""
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def spy(idx, ctx):
        seen[ctx.step] = (idx.clone(), ctx.masked.clone())

    with model.hooks({get_act_name("expert_indices", 2): spy}):
        usage = collect_expert_usage(model, PROMPTS, layers=[1, 2], scopes=("masked", "decoded", "prompt"), **KW)
    assert usage.counts.shape == (3, 2, 8, 8) and usage.top_k == 3
    assert torch.equal(usage.counts.sum(-1), usage.positions * usage.top_k)
    rows = len(PROMPTS)
    steps = torch.arange(8)
    assert torch.equal(usage.positions[0, 0], rows * (8 - steps))  # masked
    assert torch.equal(usage.positions[1, 0], rows * steps)  # decoded
    assert sorted(seen) == list(range(8))
    for step, (idx, masked) in seen.items():
        hand = torch.bincount(idx[masked].flatten(), minlength=8)
        assert torch.equal(usage.counts[0, 1, step], hand), f"step {step}"
    share = usage.share()
    assert torch.allclose(share[0, :, :].nansum(-1), torch.ones(2, 8, dtype=torch.float64))
    assert torch.isnan(share[1, :, 0]).all()  # nothing decoded before the first step

    paths = usage.save(tmp_path)
    data = json.loads(open(paths["json"]).read())
    assert data["top_k"] == 3 and len(data["records"]) == 3 * 2 * 8 * 8
    with open(paths["csv"]) as f:
        rec = next(r for r in csv.DictReader(f) if r["scope"] == "masked" and r["step"] == "3" and r["layer"] == "2")
    assert int(rec["positions"]) == rows * 5
    png = usage.plot(tmp_path / "usage.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"layer 0 was not collected; plot one of \[1, 2\]"):
        usage.plot(tmp_path / "x.png", layer=0)


def test_bad_options_are_refused_before_generating(model):
    with pytest.raises(ValueError, match=r"layers \[0\] have no routed experts; MoE layers of this model: \[1, 2\]"):
        collect_expert_usage(model, PROMPTS, layers=[0], **KW)
    with pytest.raises(ValueError, match="unknown scopes \\['unmasked'\\]"):
        collect_expert_usage(model, PROMPTS, scopes=["unmasked"], **KW)
    with pytest.raises(ValueError, match="no mixture-of-experts layers"):
        collect_expert_usage(tiny_model("llada"), PROMPTS, **KW)
    assert not model.hooks_attached
