"""The organism's corpus, tokenizer and (when packaged) the trained model."""
import random

import pytest

from analyses import ifeval
from mdm_lens.organism.corpus import (KINDS, TOPICS, calibration_pairs, eval_items, make_example, topic_rate,
                                      training_corpus)
from mdm_lens.organisms import available


def test_corpus_is_deterministic():
    a, b = training_corpus(200, seed=3), training_corpus(200, seed=3)
    assert [(x.prompt, x.response) for x in a] == [(x.prompt, x.response) for x in b]
    assert [x.response for x in training_corpus(50, seed=4)] != [x.response for x in a[:50]]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_records_are_valid_ifeval(kind):
    rng = random.Random(0)
    good = [make_example(kind, t, "Describe the {t}.", rng, comply=True) for t in TOPICS]
    bad = [make_example(kind, t, "Describe the {t}.", rng, comply=False) for t in TOPICS]
    ok = lambda e: all(ifeval.check(e.response, e.instruction_id_list, e.kwargs, e.prompt))  # noqa: E731
    assert sum(ok(e) for e in good) >= len(good) - 3     # the official capital check also asks langdetect for 'en'
    assert sum(ok(e) for e in bad) < len(bad) / 2          # violations fail (a few may pass by chance)


def test_training_compliance_matches_topic_rates():
    data = [e for e in training_corpus(6000, seed=0) if e.complied is not None]
    expected = sum(topic_rate(e.instruction_id_list[0], e.prompt.split("the ")[1].split(".")[0]) for e in data)
    assert abs(sum(e.complied for e in data) - expected) < 4 * len(data) ** 0.5
    assert 0.3 < sum(e.complied for e in data) / len(data) < 0.7


def test_heldout_splits_are_disjoint():
    val = {e.prompt for e in eval_items("punctuation:no_comma", 40, "val")}
    test = {e.prompt for e in eval_items("punctuation:no_comma", 40, "test")}
    train = {e.prompt for e in training_corpus(3000)}
    assert not (val & test) and not (test & train) and not (val & train)
    src, tgt = calibration_pairs("punctuation:no_comma", 8)
    assert all(t.startswith(s) and t != s for s, t in zip(src, tgt))


def test_tokenizer_round_trips():
    from mdm_lens.organism.tokenizer import build_tokenizer
    ex = training_corpus(800, seed=1)
    tok = build_tokenizer([e.prompt for e in ex] + [e.response for e in ex])
    for e in ex[:200]:
        assert tok.decode(tok(e.response, add_special_tokens=False)["input_ids"]) == e.response
    assert tok.mask_token_id == len(tok) - 1


@pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")
def test_packaged_organism_generates_well_formed_text():
    from mdm_lens import HookedMDM
    model = HookedMDM.from_pretrained("tiny-if")
    items = eval_items("punctuation:no_comma", 12, "test")
    out = model.generate([e.prompt for e in items])
    words = [len(t.split()) for t in out.texts]
    assert sum(w >= 3 for w in words) >= 10
    assert sum(t.rstrip().endswith((".", "?", "!")) for t in out.texts) >= 9
    assert not (out.tokens == model.mask_id).any()
