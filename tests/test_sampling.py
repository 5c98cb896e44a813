"""Samplers: token-for-token equal to the reference implementations (goldens made by
scripts/make_sampler_goldens.py from LLaDA's generate.py and Dream's _sample), plus argument errors.
Every golden case is also checked for margin from ties (tests/tie_margin.py), so it holds on any machine."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mdm_lens.loading import build_random_model
from mdm_lens.testing import tiny_config
from mdm_lens.sampling import dream_generate, get_num_transfer_tokens, llada_generate

from sampler_cases import DREAM_CASES, LLADA_CASES, case_seed, prompts
from tie_margin import Jittered

GOLDENS = load_file(str(Path(__file__).parent / "fixtures" / "sampler_goldens.safetensors"))


@pytest.fixture(scope="module")
def llada_inner():
    return build_random_model(tiny_config("llada"), seed=0).eval()


@pytest.fixture(scope="module")
def dream_inner():
    return build_random_model(tiny_config("dream"), seed=0).eval()


@pytest.mark.parametrize("i", range(len(LLADA_CASES)))
def test_llada_equals_reference(llada_inner, i):
    case = dict(LLADA_CASES[i])
    ids, mask = prompts(case.pop("padded", False))
    torch.manual_seed(case_seed(i))
    out = llada_generate(llada_inner, ids, attention_mask=mask, mask_id=319, eos_id=275, eot_id=278, **case)
    assert torch.equal(out, GOLDENS[f"llada_{i}"]), case
    torch.manual_seed(case_seed(i))  # margin from ties: the golden holds on any machine
    jittered = llada_generate(
        Jittered(llada_inner, i), ids, attention_mask=mask, mask_id=319, eos_id=275, eot_id=278, **case
    )
    assert torch.equal(jittered, out), f"case {case} sits within float round-off of a tie"


@pytest.mark.parametrize("i", range(len(DREAM_CASES)))
def test_dream_equals_reference(dream_inner, i):
    case = dict(DREAM_CASES[i])
    ids, mask = prompts(case.pop("padded", False))
    torch.manual_seed(case_seed(i))
    out = dream_generate(dream_inner, ids, attention_mask=mask, mask_token_id=319, **case)
    assert torch.equal(out, GOLDENS[f"dream_{i}"]), case
    torch.manual_seed(case_seed(i))  # margin from ties: the golden holds on any machine
    jittered = dream_generate(Jittered(dream_inner, i), ids, attention_mask=mask, mask_token_id=319, **case)
    assert torch.equal(jittered, out), f"case {case} sits within float round-off of a tie"


def test_wrapper_generation_equals_bare_sampler(tiny_llada):
    """HookedMDM.generate (context, hooks machinery) must not change a single token."""
    ids, mask = prompts(True)
    torch.manual_seed(7)
    bare = llada_generate(
        tiny_llada.model,
        ids,
        attention_mask=mask,
        mask_id=319,
        steps=8,
        gen_length=8,
        block_length=4,
        temperature=0.7,
        eos_id=275,
        eot_id=278,
    )
    with tiny_llada.hooks({n: (lambda a, c: None) for n in tiny_llada.hook_names}):
        torch.manual_seed(7)
        hooked = llada_generate(
            tiny_llada,
            ids,
            attention_mask=mask,
            mask_id=319,
            steps=8,
            gen_length=8,
            block_length=4,
            temperature=0.7,
            eos_id=275,
            eot_id=278,
        )
    assert torch.equal(bare, hooked)


def test_num_transfer_tokens_spreads_remainder_first():
    m = torch.zeros(2, 10, dtype=torch.bool)
    m[0, :7] = True
    m[1, :] = True
    n = get_num_transfer_tokens(m, 4)
    assert n.tolist() == [[2, 2, 2, 1], [3, 3, 2, 2]]


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(gen_length=10, block_length=4), "valid block lengths: \\[1, 2, 5, 10\\]"),
        (dict(gen_length=8, block_length=4, steps=5), "multiple of 2"),
        (dict(remasking="greedy"), "low_confidence"),
    ],
)
def test_llada_argument_errors(llada_inner, kw, match):
    args = dict(steps=8, gen_length=8, block_length=8)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        llada_generate(llada_inner, torch.zeros(1, 3, dtype=torch.long), mask_id=319, **args)


def test_mask_in_prompt_is_refused(llada_inner, dream_inner):
    bad = torch.tensor([[1, 319, 2]])
    with pytest.raises(ValueError, match="mask token id 319"):
        llada_generate(llada_inner, bad, mask_id=319, steps=4, gen_length=4, block_length=4)
    with pytest.raises(ValueError, match="mask token id 319"):
        dream_generate(dream_inner, bad, mask_token_id=319, max_new_tokens=4, steps=4)
    with pytest.raises(ValueError, match="unknown alg"):
        dream_generate(dream_inner, torch.zeros(1, 3, dtype=torch.long), mask_token_id=319, alg="greedy")


def test_on_step_sequence(llada_inner):
    seen = []
    llada_generate(
        llada_inner,
        torch.zeros(1, 3, dtype=torch.long),
        mask_id=319,
        steps=6,
        gen_length=6,
        block_length=2,
        on_step=lambda info: seen.append((info.step, info.block, info.num_blocks)),
    )
    assert seen == [(s, s // 2, 3) for s in range(6)]
