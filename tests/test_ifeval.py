"""Hand-written IFEval checks (no lm_eval needed): every instruction id, loose mode, bad input, loaders."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from analyses import ifeval

REL_LT, REL_GE = "less than", "at least"

# (instruction id, kwargs, response, expected strict verdict)
CASES = [
    ("keywords:existence", {"keywords": ["fox", "Dog"]}, "The quick brown FOX and the dog.", True),
    ("keywords:existence", {"keywords": ["fox", "cat"]}, "The quick brown fox.", False),
    ("keywords:existence", {"keywords": ["colou?r"]}, "What a color!", True),  # keywords are regexes
    ("keywords:frequency", {"keyword": "ai", "frequency": 3, "relation": REL_GE}, "AI, ai and Ai.", True),
    ("keywords:frequency", {"keyword": "ai", "frequency": 3, "relation": REL_LT}, "AI, ai and Ai.", False),
    ("keywords:frequency", {"keyword": " ai ", "frequency": 2, "relation": REL_GE}, "paid rain", True),  # substring
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "Concatenate the catalog.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "A CAT sat.", False),
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 2, "let_relation": REL_GE}, "Zig zag", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": REL_LT}, "Zig zag", False),
    ("keywords:letter_frequency", {"letter": "i", "let_frequency": 1, "let_relation": REL_GE}, "İ", True),  # lower()
    (
        "keywords:letter_frequency",
        {"letter": "#", "let_frequency": 2, "let_relation": REL_GE},
        "#ai #ml",
        True,
    ),  # key 1122
    (
        "language:response_language",
        {"language": "fr"},
        "Bonjour, je m'appelle Marie et j'habite à Paris depuis dix ans.",
        True,
    ),
    ("language:response_language", {"language": "fr"}, "The weather is lovely today and we walk.", False),
    ("language:response_language", {"language": "de"}, "12345 !!!", True),  # undetectable counts as followed
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": REL_LT},
        "Dr. Smith went to Washington D.C. yesterday.",
        True,
    ),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": REL_GE}, "One. Two! Three?", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": REL_GE}, "One. Two!", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n***\nb\n***\nc", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\na\n***\nb\n***", True),  # edge blanks
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "a\n***\n\n***\nb", False),  # inner blank
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "a\n******\nb", False),  # '******' = 2 dividers
    ("length_constraints:number_words", {"num_words": 5, "relation": REL_LT}, "state-of-the-art", True),
    ("length_constraints:number_words", {"num_words": 4, "relation": REL_GE}, "it's state-of-the", True),
    ("length_constraints:number_words", {"num_words": 4, "relation": REL_GE}, "one two three", False),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Hello"},
        'Intro.\n\n"Hello, world.',
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "hello"},
        "Intro.\n\n**Hello** world.",
        False,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "b"},
        "a\n\n\n\nb",
        False,
    ),  # a blank paragraph still occupies index 2
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address]", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name]", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\n\np. s. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\nP.S. only one", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nPS no dots", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n- two\n**bold** line", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* one\n* two", False),
    ("detectable_format:constrained_response", {}, "Well... My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "my answer is yes.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**bold** and *it*", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and * * and *", False),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nfoo\nSection 2\nbar",
        True,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "Section 1\nfoo\nSection 2\nbar",
        False,
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, "  ```JSON\n[1]\n```  ", True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:title", {}, "<<Poem of Joy>>\nverse", True),
    ("detectable_format:title", {}, "<<  >> and <<a\nb>>", False),
    ("combination:two_responses", {}, "Answer one.\n******\nAnswer two.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A\n******\n\n******\nB", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "  WRITE A POEM. Roses are red.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Done. any other questions?"  ', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": REL_GE},
        "NASA and the U.S. say HELLO",
        True,
    ),
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": REL_LT}, "I think", False),
    ("change_case:english_capital", {}, "THIS IS AN ENGLISH SENTENCE ABOUT THE WEATHER TODAY.", True),
    ("change_case:english_capital", {}, "THIS IS MOSTLY upper", False),
    ("change_case:english_lowercase", {}, "this is an english sentence about the weather today.", True),
    ("change_case:english_lowercase", {}, "bonjour, je m'appelle marie et j'habite à paris depuis dix ans.", False),
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    ("startend:quotation", {}, '  "Wrapped."  ', True),
    ("startend:quotation", {}, '"', False),
]


def test_cases_cover_every_instruction_id():
    assert len(ifeval.INSTRUCTION_IDS) == 25
    by_id = {}
    for iid, _, _, expected in CASES:
        by_id.setdefault(iid, set()).add(expected)
    assert by_id == {iid: {True, False} for iid in ifeval.INSTRUCTION_IDS}


@pytest.mark.parametrize("iid,kwargs,response,expected", CASES)
def test_strict_verdicts(iid, kwargs, response, expected):
    assert ifeval.check(response, [iid], [kwargs]) == [expected]


def test_loose_variants_rescue_framing_and_markdown():
    resp = 'Sure, here it is:\n"Wrapped answer."\nHope that helps'
    assert ifeval.check(resp, ["startend:quotation"], [{}]) == [False]
    assert ifeval.check(resp, ["startend:quotation"], [{}], loose=True) == [True]
    fenced = '**Answer:**\n```json\n{"a": 1}\n```'
    assert ifeval.check(fenced, ["detectable_format:json_format"], [{}], loose=True) == [True]
    assert ifeval.check(
        "**Title**", ["detectable_format:number_highlighted_sections"], [{"num_highlights": 3}], loose=True
    ) == [False]
    assert ifeval.response_variants("a*\nb\nc") == ["a*\nb\nc", "a\nb\nc", "b\nc", "a*\nb", "b", "b\nc", "a\nb", "b"]


@pytest.mark.parametrize("response", ["", "   \n", None, 42, b"bytes"])
@pytest.mark.parametrize("loose", [False, True])
def test_empty_or_non_string_responses_fail(response, loose):
    assert ifeval.check(response, ["punctuation:no_comma", "startend:quotation"], [{}, {}], loose=loose) == [
        False,
        False,
    ]


def test_bad_ids_and_kwargs_raise_value_errors():
    with pytest.raises(ValueError, match="unknown IFEval instruction id 'nope:x'.*punctuation:no_comma"):
        ifeval.check("hi", ["nope:x"], [{}])
    with pytest.raises(ValueError, match=r"unknown kwargs \['typo'\].*num_bullets"):
        ifeval.check("hi", ["detectable_format:number_bullet_lists"], [{"num_bullets": 2, "typo": 1}])
    with pytest.raises(ValueError, match="missing kwargs"):
        ifeval.check("hi", ["detectable_format:number_bullet_lists"], [{"num_bullets": None}])
    with pytest.raises(ValueError, match="relation"):
        ifeval.check("hi", ["length_constraints:number_words"], [{"num_words": 3, "relation": "at most"}])
    with pytest.raises(ValueError, match="language"):
        ifeval.check("hi", ["language:response_language"], [{"language": "xx"}])
    for bad_letter in ("ab", " ", 3):
        with pytest.raises(ValueError, match="letter"):
            ifeval.check(
                "hi",
                ["keywords:letter_frequency"],
                [{"letter": bad_letter, "let_frequency": 1, "let_relation": REL_LT}],
            )
    with pytest.raises(ValueError, match="one dict per instruction"):
        ifeval.check("hi", ["punctuation:no_comma"], [{}, {}])
    with pytest.raises(ValueError, match="list of ids"):
        ifeval.check("hi", "punctuation:no_comma", [{}])
    with pytest.raises(ValueError, match="nth_paragraph"):
        ifeval.check(
            "hi",
            ["length_constraints:nth_paragraph_first_word"],
            [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}],
        )
    with pytest.raises(ValueError):  # bad kwargs raise even for an empty response
        ifeval.check("", ["punctuation:no_comma"], [{"x": 1}])


def test_none_padding_is_dropped_like_the_hub_rows():
    kwargs = [{"num_bullets": 2, "keyword": None, "relation": None, "language": None}]
    assert ifeval.check("* a\n* b", ["detectable_format:number_bullet_lists"], kwargs) == [True]
    assert ifeval.check("fine", ["punctuation:no_comma"], None) == [True]


def test_punkt_and_word_tokenizer_match_nltk_reference_outputs():
    text = "Good muffins cost $3.88\nin New York.  Please buy me\ntwo of them.\n\nThanks."
    assert ifeval.split_sentences(text) == [
        "Good muffins cost $3.88\nin New York.",
        "Please buy me\ntwo of them.",
        "Thanks.",
    ]
    assert ifeval.word_tokenize(text) == [
        "Good",
        "muffins",
        "cost",
        "$",
        "3.88",
        "in",
        "New",
        "York",
        ".",
        "Please",
        "buy",
        "me",
        "two",
        "of",
        "them",
        ".",
        "Thanks",
        ".",
    ]
    assert ifeval.count_sentences("Mr. Smith met Dr. Jones at 5 p.m. today. They talked.") == 2
    assert ifeval.count_words("It's state-of-the-art, 3.5 times!") == 9


def test_no_nltk_data_or_download_needed(monkeypatch, tmp_path):
    import nltk

    from analyses.ifeval import _text

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("nltk.download called"))
    for cached in (_text.punkt_parameters, _text._sentence_tokenizer):
        cached.cache_clear()
    assert ifeval.count_sentences("One here. Two there.") == 2
    assert len(_text.punkt_parameters().abbrev_types) == 156


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"key": 1, "prompt": "Write without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    {
        "key": 2,
        "prompt": "Two bullets, lowercase.",
        "instruction_id_list": ["detectable_format:number_bullet_lists", "change_case:english_lowercase"],
        "kwargs": [{"num_bullets": 2, "relation": None}, {"language": None}],
    },
]


def test_load_prompts_local_and_evaluate(tmp_path):
    records = ifeval.load_prompts(_write_jsonl(tmp_path / "input_data.jsonl", ROWS))
    assert records[1]["kwargs"] == [{"num_bullets": 2}, {}]
    responses = ["Fine, thanks.", "* the first point is simple\n* the second point is also simple"]
    result = ifeval.evaluate(records, responses)
    assert result.metrics() == {
        "prompt_level_strict_acc": 0.5,
        "inst_level_strict_acc": 2 / 3,
        "prompt_level_loose_acc": 0.5,
        "inst_level_loose_acc": 2 / 3,
    }
    assert result.breakdown()["punctuation:no_comma"] == {"count": 1, "strict": 0.0, "loose": 0.0}
    assert result.breakdown("category")["detectable_format"]["strict"] == 1.0
    by_prompt = ifeval.evaluate(records, {r["prompt"]: "ok" for r in records}, loose=False)
    assert by_prompt.prompt_level_loose is None and by_prompt.num_instructions == 3
    with pytest.raises(ValueError, match="2 records but 1 responses"):
        ifeval.evaluate(records, ["x"])


def test_load_prompts_errors_and_hub(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        ifeval.load_prompts(tmp_path / "missing.jsonl")
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, split: [dict(ROWS[1], kwargs=[{"num_bullets": 2, "keywords": None}, {}])]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert ifeval.load_prompts("google/IFEval")[0]["kwargs"] == [{"num_bullets": 2}, {}]
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails -> huggingface_hub route
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="datasets.*huggingface_hub"):
        ifeval.load_prompts("google/IFEval")


SHARED = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[1] / "shared" / "ifeval",
            Path(__file__).resolve().parents[2] / "shared" / "ifeval",
        )
        if p.is_dir()
    ),
    None,
)


@pytest.mark.skipif(SHARED is None, reason="shared/ifeval not present")
def test_load_contrastive_pairs_from_shared_files():
    wo = ifeval.load_contrastive_pairs(SHARED / "ifeval_wo_instructions.jsonl")
    assert len(wo) == 541 and wo[0].key == 1000 and wo[0].kwargs is None
    assert wo[0].prompt.startswith("Write a 300+ word summary") and "commas" not in wo[0].prompt_without_instruction
    single = ifeval.load_contrastive_pairs(SHARED / "ifeval_single_instr_format.jsonl")
    assert len(single) == 163 and all(len(p.instruction_id_list) == 1 for p in single)
    assert all(set(p.instruction_id_list) <= set(ifeval.INSTRUCTION_IDS) for p in single + wo)
    for pair in single:  # the kwargs are usable as-is by the checker
        ifeval.bind_instructions(pair.instruction_id_list, pair.kwargs)


def test_contrastive_pairs_formats_and_attach(tmp_path):
    path = _write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {
                "key": 1,
                "original_prompt": "Say hi, no commas.",
                "model_output": "Say hi.",
                "prompt": "meta",
                "instruction_id_list": ["punctuation:no_comma"],
            },
            {
                "key": 2,
                "prompt": "Two bullets.",
                "prompt_without_instruction": "Bullets.",
                "instruction_id_list": ["detectable_format:number_bullet_lists"],
                "kwargs": [{"num_bullets": 2}],
            },
        ],
    )
    pairs = ifeval.load_contrastive_pairs(path)
    assert (pairs[0].prompt, pairs[0].prompt_without_instruction) == ("Say hi, no commas.", "Say hi.")
    assert pairs[1].kwargs == ({"num_bullets": 2},)
    filled = ifeval.attach_kwargs(pairs, [{"key": 1, "kwargs": [{}]}])
    assert filled[0].kwargs == ({},) and filled[1].kwargs == ({"num_bullets": 2},)
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"key": 1, "text": "x"}])
    with pytest.raises(ValueError, match="expected"):
        ifeval.load_contrastive_pairs(bad)


def test_evaluate_matches_check_per_prompt():
    records = [
        {"key": i, "prompt": f"p{i}", "instruction_id_list": [iid], "kwargs": [kw]}
        for i, (iid, kw, _, _) in enumerate(CASES)
    ]
    responses = ["Intro line\n" + resp + "\n**end**" for _, _, resp, _ in CASES]
    result = ifeval.evaluate(records, responses)
    for record, response, row in zip(records, responses, result.per_prompt):
        assert row["strict"] == ifeval.check(response, record["instruction_id_list"], record["kwargs"])
        assert row["loose"] == ifeval.check(response, record["instruction_id_list"], record["kwargs"], loose=True)
    assert result.inst_level_loose >= result.inst_level_strict
