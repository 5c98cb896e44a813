"""The 25 IFEval instruction ids, their kwargs, and kwarg validation.

The official harness drops falsy kwargs and then lets ``build_description``
fill any missing argument with a *random* value; a checker that silently
randomizes is useless for evaluation, so here a missing, unknown or
ill-typed kwarg is a ValueError that names the valid ones instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import _checks_format as fmt
from . import _checks_text as txt

# ISO 639-1 codes the official ``language:response_language`` accepts.
LANGUAGE_CODES = frozenset(
    "en es pt ar hi fr ru de ja it bn uk th ur ta te bg ko pl he fa vi ne sw kn mr gu pa ml fi".split()
)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"kwarg {name!r} must be an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"kwarg {name!r} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"kwarg {name!r} must be non-negative, got {value!r}")
    return int(value)


def _relation(name: str, value: Any) -> str:
    if value not in txt.RELATIONS:
        raise ValueError(f"kwarg {name!r} must be one of {txt.RELATIONS}, got {value!r}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"kwarg {name!r} must be a string, got {value!r}")
    return value


def _stripped(name: str, value: Any) -> str:
    return _text(name, value).strip()


def _regex(name: str, value: Any) -> str:
    value = _stripped(name, value)
    _compiles(name, value)
    return value


def _compiles(name: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"kwarg {name!r}: {pattern!r} is not a valid regular expression ({exc})") from exc


def _words(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"kwarg {name!r} must be a non-empty list of strings, got {value!r}")
    for word in value:
        _text(name, word)
        _compiles(name, word)
    return tuple(value)


def _letter(name: str, value: Any) -> str:
    # Any single character, as google-research counts it (the dataset has '#'
    # and '!'); lm-eval 0.4.x would swap non-letters for a random letter.
    if not isinstance(value, str) or len(value) != 1 or value.isspace() or len(value.lower()) != 1:
        raise ValueError(f"kwarg {name!r} must be a single non-space character, got {value!r}")
    return value.lower()


def _language(name: str, value: Any) -> str:
    if value not in LANGUAGE_CODES:
        raise ValueError(f"kwarg {name!r} must be one of {sorted(LANGUAGE_CODES)}, got {value!r}")
    return value


def _lower(name: str, value: Any) -> str:
    return _text(name, value).lower()


@dataclass(frozen=True)
class InstructionSpec:
    """One instruction id: its checker and the kwargs it requires (name -> parser)."""

    instruction_id: str
    checker: Callable[..., bool]
    params: Mapping[str, Callable[[str, Any], Any]]

    def bind(self, kwargs: Mapping[str, Any] | None) -> Callable[[str], bool]:
        """Validate ``kwargs`` (falsy values dropped, as officially) and return ``response -> bool``."""
        given = {k: v for k, v in dict(kwargs or {}).items() if v}
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ValueError(
                f"unknown kwargs {unknown} for instruction {self.instruction_id!r}; "
                f"valid kwargs: {sorted(self.params) or 'none'}"
            )
        missing = sorted(set(self.params) - set(given))
        if missing:
            raise ValueError(
                f"missing kwargs {missing} for instruction {self.instruction_id!r} "
                f"(None/empty values count as missing); required: {sorted(self.params)}"
            )
        parsed = {name: parse(name, given[name]) for name, parse in self.params.items()}
        if self.instruction_id == "length_constraints:nth_paragraph_first_word":
            if not 1 <= parsed["nth_paragraph"] <= parsed["num_paragraphs"]:
                raise ValueError("kwarg 'nth_paragraph' must be between 1 and 'num_paragraphs'")
        checker = self.checker
        return lambda response: bool(checker(response, **parsed))


def _spec(instruction_id: str, checker: Callable[..., bool], **params) -> InstructionSpec:
    return InstructionSpec(instruction_id, checker, params)


_SPECS = (
    _spec("keywords:existence", txt.keywords_existence, keywords=_words),
    _spec("keywords:frequency", txt.keywords_frequency, keyword=_regex, frequency=_count, relation=_relation),
    _spec("keywords:forbidden_words", txt.keywords_forbidden, forbidden_words=_words),
    _spec(
        "keywords:letter_frequency",
        txt.keywords_letter_frequency,
        letter=_letter,
        let_frequency=_count,
        let_relation=_relation,
    ),
    _spec("language:response_language", txt.response_language, language=_language),
    _spec("length_constraints:number_sentences", txt.number_sentences, num_sentences=_count, relation=_relation),
    _spec("length_constraints:number_paragraphs", txt.number_paragraphs, num_paragraphs=_count),
    _spec("length_constraints:number_words", txt.number_words, num_words=_count, relation=_relation),
    _spec(
        "length_constraints:nth_paragraph_first_word",
        txt.nth_paragraph_first_word,
        num_paragraphs=_count,
        nth_paragraph=_count,
        first_word=_lower,
    ),
    _spec("detectable_content:number_placeholders", fmt.number_placeholders, num_placeholders=_count),
    _spec("detectable_content:postscript", fmt.postscript, postscript_marker=_regex),
    _spec("detectable_format:number_bullet_lists", fmt.number_bullet_lists, num_bullets=_count),
    _spec("detectable_format:constrained_response", fmt.constrained_response),
    _spec("detectable_format:number_highlighted_sections", fmt.number_highlighted_sections, num_highlights=_count),
    _spec("detectable_format:multiple_sections", fmt.multiple_sections, section_spliter=_regex, num_sections=_count),
    _spec("detectable_format:json_format", fmt.json_format),
    _spec("detectable_format:title", fmt.title),
    _spec("combination:two_responses", fmt.two_responses),
    _spec("combination:repeat_prompt", fmt.repeat_prompt, prompt_to_repeat=_text),
    _spec("startend:end_checker", fmt.end_checker, end_phrase=_stripped),
    _spec(
        "change_case:capital_word_frequency",
        txt.capital_word_frequency,
        capital_frequency=_count,
        capital_relation=_relation,
    ),
    _spec("change_case:english_capital", txt.english_capital),
    _spec("change_case:english_lowercase", txt.english_lowercase),
    _spec("punctuation:no_comma", txt.no_comma),
    _spec("startend:quotation", fmt.quotation),
)

INSTRUCTIONS: dict[str, InstructionSpec] = {spec.instruction_id: spec for spec in _SPECS}
INSTRUCTION_IDS: tuple[str, ...] = tuple(INSTRUCTIONS)


def get_spec(instruction_id: Any) -> InstructionSpec:
    """The spec for ``instruction_id``; ValueError naming the valid ids otherwise."""
    spec = INSTRUCTIONS.get(instruction_id) if isinstance(instruction_id, str) else None
    if spec is None:
        raise ValueError(f"unknown IFEval instruction id {instruction_id!r}; valid ids: {', '.join(INSTRUCTION_IDS)}")
    return spec
