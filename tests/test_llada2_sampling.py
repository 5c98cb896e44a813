"""LLaDA2's block-diffusion sampler against the original `LLaDA2MoeModelLM.generate` (goldens made by
scripts/make_llada2_sampler_goldens.py with the hub code, transformers 4.57, on the cases in
tests/llada2_sampler_cases.py): token ids exact."""

from __future__ import annotations

import pytest
import torch
from llada2_sampler_cases import CASES, EOS, MASK, load_golden, native_model

from mdm_lens.sampling.llada2 import block_causal_mask, llada2_generate, reference_answer
from mdm_lens.sampling.llada2_cached import llada2_generate_cached


@pytest.fixture(scope="module")
def golden():
    return load_golden()


@pytest.fixture(scope="module")
def native(golden):
    return native_model(golden[0])


class Replay:
    """Feeds back the reference's logits forward by forward, checking that the sampler asks for the same
    forward (same ids, block-causal mask, positions) the reference made."""

    def __init__(self, inputs: torch.Tensor, logits: torch.Tensor, block_length: int):
        self.inputs, self.logits, self.bl, self.n = inputs, logits, block_length, 0

    def __call__(self, ids, attention_mask, position_ids):
        want = self.inputs[self.n]
        width = int((want >= 0).sum())
        assert torch.equal(ids[0], want[:width]), f"forward {self.n}: different input ids than the reference's"
        blocks = -(-width // self.bl)
        ref = block_causal_mask(blocks, self.bl, ids.device)[..., :width, :width]
        assert torch.equal(attention_mask == 0, ref == 0) and torch.equal(position_ids[0], torch.arange(width))
        out = torch.zeros((1, width, self.logits.shape[-1]), dtype=self.logits.dtype)
        out[:, -self.bl :] = self.logits[self.n]
        self.n += 1
        return out


def _run(model, case: dict, **extra) -> list[torch.Tensor]:
    torch.manual_seed(case["seed"])
    seqs = llada2_generate(model, torch.tensor(case["prompt"]), **case["settings"], **extra)
    return reference_answer(seqs, len(case["prompt"][0]), case["settings"]["eos_id"])


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_sampler_replays_the_reference_exactly(golden, i):
    """Given the reference's logits, our sampler makes the same forwards and picks the same tokens (this
    checks the sampler alone, bf16 cases included, whatever the model code)."""
    tensors, _ = golden
    case = CASES[i]
    replay = Replay(tensors[f"case{i}.inputs"], tensors[f"case{i}.logits"], case["settings"]["block_length"])
    stats: dict = {}
    answer = _run(replay, case, stats=stats)[0]
    assert torch.equal(answer, tensors[f"case{i}.answer"])
    assert replay.n == tensors[f"case{i}.inputs"].shape[0] == stats["forwards"]


FLOAT32 = [i for i, c in enumerate(CASES) if c["dtype"] == "float32"]
# the two longest float32 runs (25 and 27 forwards) repeat paths the others cover; the replay test checks them
NATIVE = [i for i in FLOAT32 if CASES[i]["name"] not in ("greedy_default", "no_threshold_steps12")]


def test_float32_goldens_have_margin(golden):
    """A float32 golden must survive 1e-5 logit jitter (tests/tie_margin.py), or it would not transfer."""
    assert all(golden[1][i]["margin"] and golden[1][i]["ours_equal"] for i in FLOAT32)


def test_native_model_generates_the_reference_tokens(golden, native):
    """Our sampler on the native model (fixture weights) against the original code's answers, float32."""
    same = {CASES[i]["name"]: torch.equal(_run(native, CASES[i])[0], golden[0][f"case{i}.answer"]) for i in NATIVE}
    assert all(same.values()), same


def test_native_bfloat16_generates_the_reference_tokens(golden, native):
    """bfloat16 end to end (model, mask, softmax and threshold compare in bf16): no jitter margin exists at
    bf16 resolution, so this asserts the cases where native and original bf16 forwards agree token for token."""
    bf16 = [i for i, c in enumerate(CASES) if c["dtype"] == "bfloat16"]
    native.model.to(torch.bfloat16)
    try:
        same = [torch.equal(_run(native, CASES[i])[0], golden[0][f"case{i}.answer"]) for i in bf16]
    finally:
        native.model.float()
    assert all(same), f"bf16 cases equal to the reference: {same}"


def test_model_generate_picks_llada2_sampler_and_settings(golden, native):
    case = CASES[2]  # greedy, threshold 0.8, block-aligned prompt: 4 forwards
    s = {k: v for k, v in case["settings"].items() if k != "mask_id"}
    out = native.generate(torch.tensor(case["prompt"]), chat=False, **s)
    assert torch.equal(out.tokens[0], golden[0]["case2.answer"])
    settings = native.sampler_settings()
    assert settings["block_length"] == 32 and settings["steps"] == 32 and settings["threshold"] == 0.95
    assert native.spec.length_key == "gen_length"


def test_rows_decode_independently_and_padding_is_hidden(native):
    """Greedy rows of a batch equal the rows run alone; a left-padded row does not depend on its pad ids, the
    cached path agrees, and hooks see the pads as the `padding` scope."""
    a, b = torch.tensor([[5, 9, 17, 33, 40]]), torch.tensor([[11, 4, 60, 23, 7]])
    kw = {"gen_length": 16, "block_length": 8, "steps": 8, "threshold": 0.7, "eos_id": EOS, "mask_id": MASK}
    both = llada2_generate(native, torch.cat([a, b]), **kw)
    alone = torch.cat([llada2_generate(native, a, **kw), llada2_generate(native, b, **kw)])
    for r in range(2):
        assert torch.equal(reference_answer(both, 5, EOS)[r], reference_answer(alone, 5, EOS)[r])
    am = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    scopes: list = []

    def hook(act, ctx):
        scopes.append((ctx.computed, ctx.scope_mask("padding").clone(), ctx.scope_mask("prompt").clone()))

    runs = []
    for fn, pad in ((llada2_generate, 1), (llada2_generate, 2), (llada2_generate_cached, 1)):
        with native.hooks({"blocks.0.hook_resid_post": hook}):
            ids = torch.tensor([[pad, pad, 17, 33, 40], [5, 9, 17, 33, 40]])
            runs.append(fn(native, ids, attention_mask=am, **kw))
    assert torch.equal(runs[0][:, 5:], runs[1][:, 5:]) and torch.equal(runs[2], runs[0])
    for (lo, hi), padding, prompt in scopes:  # pads are the `padding` scope, not `prompt`, cached or not
        cols = torch.arange(lo, hi)
        assert torch.equal(padding[0], cols < 2) and not bool(padding[1].any())
        assert torch.equal(prompt[0], (cols >= 2) & (cols < 5)) and torch.equal(prompt[1], cols < 5)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"minimal_topk": 40}, "minimal_topk=40 must be an integer in [1, gen_length=16]"),
        ({"threshold": 1.5}, "threshold=1.5 must be a number in [0, 1]"),
        ({"block_length": 0}, "block_length=0 must be a positive integer"),
        ({"top_k": 2.5}, "top_k=2.5 must be None or an integer"),
    ],
)
def test_bad_options_are_refused_before_any_forward(native, kw, words):
    calls = []
    with native.hooks({"blocks.0.hook_resid_post": lambda act, ctx: calls.append(1)}):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            llada2_generate(native, torch.tensor([[5, 6]]), **{"gen_length": 16, "mask_id": MASK, **kw})
    assert calls == [] and native.step_info is None
