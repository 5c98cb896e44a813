"""analyses.damage: degeneracy rules on crafted strings, and NLL records on the packaged organism."""

import math

import pytest
import torch

from analyses.damage import damage, degeneracy, repeated_fraction, stutters, text_tokens


@pytest.mark.parametrize(
    "text, reasons",
    [
        ("I\ufffd,?\n IT IS SIMPLE.", ["replacement_char"]),  # issue 14: steered "all capitals"
        (" and the, the the LOOKS,,", ["stutter"]),  # issue 14: full-covariance OT
        ("", ["empty"]),
        (" \n\t ", ["empty"]),
        ("Hello\x07 world", ["non_printable"]),
        ("private \ue000 use", ["non_printable"]),
        ("a cat sat. " * 5, ["repetition"]),
        ("the " * 10, ["repetition", "stutter"]),
        ("yes yes yes", ["stutter"]),
        ("\ufffd\ufffd", ["replacement_char"]),
    ],
)
def test_degenerate_texts_are_flagged(text, reasons):
    assert degeneracy(text) == reasons


@pytest.mark.parametrize(
    "text",
    [
        "The sea is calm tonight. The tide is full, the moon lies fair upon the straits; on the French coast "
        "the light gleams and is gone; the cliffs of England stand, glimmering and vast, out in the tranquil bay.",
        "1. Apples\n2. Pears\n3. Plums\n4. Cherries",
        "- **Name**: Ann\n- **Age**: 3\n- **City**: Rome\n- **Job**: none",
        "Family \U0001f468\u200d\U0001f469\u200d\U0001f467 emoji, tabs\tand\r\nnewlines",
        "I think that that is fine... really!!",  # one slip, repeated marks allowed
        "WHAT A DAY. IT IS SIMPLE.",
    ],
)
def test_ordinary_texts_pass(text):
    assert degeneracy(text) == []


def test_rules_are_measurable():
    toks = text_tokens("A cat. A cat. A cat.")
    assert toks == ["a", "cat", ".", "a", "cat", ".", "a", "cat", "."]
    assert repeated_fraction(toks, ngram=3) == pytest.approx(6 / 9)  # everything after the first period
    assert repeated_fraction(toks, ngram=4) == pytest.approx(6 / 9)
    assert repeated_fraction(text_tokens("red blue green gold red blue"), ngram=2) == pytest.approx(2 / 6)
    assert repeated_fraction(text_tokens("red blue green"), ngram=2) == 0.0  # shorter than 2n
    assert stutters(text_tokens("the the, x ,, ;; .. 1 1")) == 3  # words and , ; only
    assert degeneracy(" and the, the the LOOKS,,", min_stutters=3) == []
    assert degeneracy("a cat sat. " * 5, max_repeated=0.9) == []
    with pytest.raises(ValueError, match="max_repeated=1.5"):
        degeneracy("x", max_repeated=1.5)


@pytest.fixture(scope="module")
def organism():
    from mdm_lens import HookedMDM

    return HookedMDM.from_pretrained("tiny-if").eval()


def test_damage_records(organism):
    prompt = "Write a short note about the sea in all lowercase letters."
    own = organism.generate([prompt], seed=0, gen_length=32, steps=16, block_length=32).texts[0]
    words = own.split()
    shuffled = " ".join(words[i] for i in torch.randperm(len(words), generator=torch.Generator().manual_seed(0)))
    texts = [own, shuffled, "", "the the the the the the the the the"]
    recs = damage(organism, [prompt] * 4, texts, mc_num=32, batch_size=16)
    assert [set(r) for r in recs] == [{"nll", "degenerate", "reasons", "n_chars", "n_tokens"}] * 4
    assert recs[0]["degenerate"] is False and recs[0]["reasons"] == [], own
    assert recs[0]["n_chars"] == len(own)
    assert recs[0]["n_tokens"] == len(organism.tokenizer(own, add_special_tokens=False)["input_ids"])
    assert math.isfinite(recs[0]["nll"]) and recs[0]["nll"] + 0.5 < recs[1]["nll"], (own, shuffled, recs)
    assert recs[2] == {"nll": None, "degenerate": True, "reasons": ["empty"], "n_chars": 0, "n_tokens": 0}
    assert recs[3]["degenerate"] and recs[3]["reasons"] == ["repetition", "stutter"]
    assert recs[3]["nll"] > recs[0]["nll"]
    # the same text scores the same alone (seeded per text, independent of the batch)
    again = damage(organism, [prompt], [shuffled], mc_num=32, batch_size=16)[0]
    assert again == recs[1]
    with pytest.raises(ValueError, match="2 prompts for 1 texts"):
        damage(organism, [prompt, prompt], [own])
