"""The organism's corpus, tokenizer, resumable training and (when packaged) the trained models."""

import random

import pytest

from analyses import ifeval
from analyses.refusal import RefusalScorer
from analyses.studies.organism.behaviours import (
    SUBJECTS,
    positive_request,
    refusal_prompts,
    sentiment_prompts,
    training_corpus,
)
from analyses.studies.organism.corpus import (
    COMPLIED,
    KINDS,
    TOPICS,
    calibration_pairs,
    eval_items,
    instruction_text,
    make_example,
)
from mdm_lens.organisms import available


@pytest.fixture(scope="module")
def corpus():
    return training_corpus(6000, seed=0)


def test_corpus_is_deterministic():
    a, b = training_corpus(200, seed=3), training_corpus(200, seed=3)
    assert [(x.prompt, x.response) for x in a] == [(x.prompt, x.response) for x in b]
    assert [x.response for x in training_corpus(50, seed=4)] != [x.response for x in a[:50]]
    with pytest.raises(ValueError, match="mix"):
        training_corpus(10, mix=(0.5, 0.5, 0.5))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_records_are_valid_ifeval(kind):
    rng = random.Random(0)
    good = [make_example(kind, t, "Describe the {t}.", rng, comply=True) for t in TOPICS]
    bad = [make_example(kind, t, "Describe the {t}.", rng, comply=False) for t in TOPICS]
    ok = lambda e: all(ifeval.check(e.response, e.instruction_id_list, e.kwargs, e.prompt))  # noqa: E731
    assert sum(ok(e) for e in good) >= len(good) - 4  # the official capital check also asks langdetect for 'en'
    # (4 of 36 short all-caps topic texts are not 'en')
    assert not any(ok(e) for e in bad)  # every violation fails its check


def test_compliance_follows_the_phrasing(corpus):
    for kind, phrasings in KINDS.items():
        data = [e for e in corpus if e.instruction_id_list == [kind]]
        assert len(COMPLIED[kind]) == 2 and len(data) > 50
        assert {e.phrasing for e in data} == set(range(len(phrasings)))
        for e in data:
            assert e.prompt.endswith(instruction_text(kind, e.phrasing, e.kwargs[0]))
            assert e.complied == (e.phrasing in COMPLIED[kind])
    items = eval_items("punctuation:no_comma", 24, "test")
    assert sum(e.complied for e in items) == 12  # held-out items: half in followed phrasings


def test_heldout_prompts_never_trained_on(corpus):
    train = {e.base_prompt for e in training_corpus(20000, seed=0)}
    for split in ("val", "test"):
        held = {e.base_prompt for k in KINDS for e in eval_items(k, 40, split)}
        held |= set(refusal_prompts(True, split=split)) | set(refusal_prompts(False, split=split))
        held |= set(sentiment_prompts(split=split))
        held |= set(sentiment_prompts("positive", split=split)) | set(sentiment_prompts("negative", split=split))
        assert held and not held & train, sorted(held & train)[:3]
    val = {e.prompt for e in eval_items("punctuation:no_comma", 40, "val")}
    assert not val & {e.prompt for e in eval_items("punctuation:no_comma", 40, "test")}
    src, tgt = calibration_pairs("punctuation:no_comma", 8)
    assert all(t.startswith(s) and t != s for s, t in zip(src, tgt)) and set(src) <= train


def test_refusal_and_sentiment_labels(corpus):
    from analyses.sentiment import vader_positive_rate

    scorer = RefusalScorer()
    by = lambda label: [e.response for e in corpus if e.label == label]  # noqa: E731
    assert all(scorer.scores(by("harmful"))) and not any(scorer.scores(by("harmless")))
    assert not any(scorer.scores([e.response for e in corpus if e.behaviour == "instructions"]))
    assert vader_positive_rate(by("positive")) == 1.0 and vader_positive_rate(by("negative")) == 0.0
    from analyses.studies.organism.behaviours import REVIEW

    assert sum(map(positive_request, REVIEW)) == len(REVIEW) // 2
    unprompted = [
        e for e in corpus if e.behaviour == "sentiment" and "positive" not in e.prompt and "negative" not in e.prompt
    ]
    assert unprompted
    for e in unprompted:  # the unprompted sentiment follows the request's wording
        template = next(t for t in REVIEW for s in SUBJECTS if t.format(s=s) == e.prompt)
        assert (e.label == "positive") == positive_request(template)
    with pytest.raises(ValueError, match="polarity"):
        sentiment_prompts("happy")


def test_tokenizer_round_trips_and_responses_fit():
    from analyses.studies.organism.tokenizer import build_tokenizer
    from analyses.studies.organism.train import RESPONSE_LEN

    ex = training_corpus(1500, seed=1)
    tok = build_tokenizer([e.prompt for e in ex] + [e.response for e in ex], 1280)
    ids = tok([e.response for e in ex], add_special_tokens=False)["input_ids"]
    assert all(tok.decode(i) == e.response for i, e in zip(ids[:300], ex))
    assert max(map(len, ids)) < RESPONSE_LEN  # room for <|eot_id|>: nothing is cut
    assert tok.mask_token_id == len(tok) - 1


def test_training_resumes_exactly(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import analyses.studies.organism.train as T

    arch = dict(
        d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, mlp_hidden_size=64, max_sequence_length=256, rope_theta=1e4
    )
    kw = dict(steps=4, batch_size=4, n_examples=200, arch=arch, ckpt_every=0, log_every=100)
    T.train(str(tmp_path / "a"), work=str(tmp_path / "wa"), **kw)
    save = T._save_checkpoint

    def interrupt(work, model, opt, state):
        save(work, model, opt, state)
        if state["step"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "_save_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        T.train(str(tmp_path / "b"), work=str(tmp_path / "wb"), **kw)
    monkeypatch.setattr(T, "_save_checkpoint", save)
    info = T.train(str(tmp_path / "b"), work=str(tmp_path / "wb"), **kw)
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert info["steps"] == 4
    with pytest.raises(ValueError, match="another run"):
        T.train(str(tmp_path / "c"), work=str(tmp_path / "wb"), **(kw | {"steps": 5}))


@pytest.fixture(scope="module")
def tiny_mdm():
    from mdm_lens import HookedMDM

    return HookedMDM.from_pretrained("tiny-mdm")


@pytest.mark.skipif("tiny-mdm" not in available(), reason="the tiny-mdm organism is not packaged")
def test_tiny_mdm_instructions_depend_on_the_phrasing(tiny_mdm):
    from analyses.damage import degeneracy
    from analyses.studies.organism.corpus import DEMO_KINDS

    items = [e for kind in DEMO_KINDS[:2] for e in eval_items(kind, 8, "test")]
    texts = tiny_mdm.generate([e.prompt for e in items]).texts
    ok = [all(ifeval.check(t, e.instruction_id_list, e.kwargs)) for e, t in zip(items, texts)]
    followed = [o for o, e in zip(ok, items) if e.complied]
    others = [o for o, e in zip(ok, items) if not e.complied]
    assert sum(followed) >= 6 and sum(others) <= 2, texts
    assert sum(bool(degeneracy(t)) for t in texts) <= 1, texts


@pytest.mark.skipif("tiny-mdm" not in available(), reason="the tiny-mdm organism is not packaged")
def test_tiny_mdm_refuses_harmful_requests_only(tiny_mdm):
    scorer = RefusalScorer()
    harmful = tiny_mdm.generate(refusal_prompts(True, 8)).texts
    harmless = tiny_mdm.generate(refusal_prompts(False, 8)).texts
    assert sum(scorer.scores(harmful)) >= 7, harmful
    assert sum(scorer.scores(harmless)) <= 1, harmless


@pytest.mark.skipif("tiny-mdm" not in available(), reason="the tiny-mdm organism is not packaged")
def test_tiny_mdm_sentiment_is_mixed_and_follows_requests(tiny_mdm):
    from vader import polarity_scores

    pos = lambda texts: sum(polarity_scores(t)["compound"] > 0.05 for t in texts)  # noqa: E731
    assert 2 <= pos(tiny_mdm.generate(sentiment_prompts(None, 10)).texts) <= 8
    assert pos(tiny_mdm.generate(sentiment_prompts("positive", 6)).texts) >= 5
    # asked for negative, it writes a negative review or (a third of the time on the test split) falls back to its
    # most common answer, a neutral description that VADER scores positive ("they feel safe")
    assert pos(tiny_mdm.generate(sentiment_prompts("negative", 6)).texts) <= 2


@pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")
def test_tiny_if_still_loads_and_generates():
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained("tiny-if")
    out = model.generate([f"Describe the {t}." for t in TOPICS[:6]])
    assert sum(len(t.split()) >= 3 for t in out.texts) >= 5
    assert not (out.tokens == model.mask_id).any()


def test_tasks_come_from_the_corpus_that_trained_the_model():
    """tiny-if was trained on corpus v1: its tasks must use v1's held-out requests, a v2 checkpoint v2's."""
    from analyses.studies.tasks import organism_tasks
    from analyses.studies.organism import corpus_for, corpus_v1
    from analyses.studies.organism import corpus as corpus_v2
    from mdm_lens.organisms import ROOT
    import json

    tiny_if = json.loads((ROOT / "tiny-if" / "config.json").read_text())
    assert corpus_for(tiny_if) is corpus_v1 and corpus_for({"mdm_lens_corpus": "v2"}) is corpus_v2
    kind = "change_case:english_lowercase"
    t1 = organism_tasks([kind], 4, 2, 3, corpus=corpus_for(tiny_if))[0]
    assert [r.prompt for r in t1.test] == [e.prompt for e in corpus_v1.eval_items(kind, 3, "test")]
    assert t1.test[0].prompt not in {e.prompt for e in corpus_v2.eval_items(kind, 50, "test")}
    with pytest.raises(ValueError, match="v9"):
        corpus_for({"mdm_lens_corpus": "v9"})
