"""Checkers for content, markdown-format, combination and start/end instructions.

Same contract as ``_checks_text``: response plus validated kwargs in, verdict
out, with the official regular expressions' behaviour (``\\s`` may span
newlines in bullet matching, section splitters and postscript markers are
regular expressions, ``**double**`` highlights are found by a second pattern
alongside ``*single*`` ones, ...).
"""

from __future__ import annotations

import json
import re

CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

_PLACEHOLDER = re.compile(r"\[.*?\]")
_STAR_BULLET = re.compile(r"^\s*\*[^\*].*$", flags=re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", flags=re.MULTILINE)
_SINGLE_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")
_TITLE = re.compile(r"<<[^\n]+>>")
_JSON_FENCE_OPENERS = ("```json", "```Json", "```JSON", "```")


def number_placeholders(value: str, *, num_placeholders: int) -> bool:
    return len(_PLACEHOLDER.findall(value)) >= num_placeholders


def postscript_pattern(marker: str) -> str:
    """Regex searched (multi-line, on the lower-cased response) for a postscript marker."""
    if marker == "P.P.S":
        return r"\s*p\.\s?p\.\s?s.*$"
    if marker == "P.S.":
        return r"\s*p\.\s?s\..*$"
    return r"\s*" + marker.lower() + r".*$"


def postscript(value: str, *, postscript_marker: str) -> bool:
    pattern = postscript_pattern(postscript_marker)
    return re.search(pattern, value.lower(), flags=re.MULTILINE) is not None


def number_bullet_lists(value: str, *, num_bullets: int) -> bool:
    found = len(_STAR_BULLET.findall(value)) + len(_DASH_BULLET.findall(value))
    return found == num_bullets


def constrained_response(value: str) -> bool:
    value = value.strip()
    return any(option in value for option in CONSTRAINED_OPTIONS)


def number_highlighted_sections(value: str, *, num_highlights: int) -> bool:
    singles = sum(1 for h in _SINGLE_HIGHLIGHT.findall(value) if h.strip("*").strip())
    doubles = sum(1 for h in _DOUBLE_HIGHLIGHT.findall(value) if h.removeprefix("**").removesuffix("**").strip())
    return singles + doubles >= num_highlights


def multiple_sections(value: str, *, section_spliter: str, num_sections: int) -> bool:
    # Counted as the official does: pieces of re.split minus one (a capture
    # group in the splitter would add pieces; kept for parity).
    pieces = re.split(r"\s?" + section_spliter + r"\s?\d+\s?", value)
    return len(pieces) - 1 >= num_sections


def json_format(value: str) -> bool:
    """Valid JSON once an optional markdown code fence is peeled off."""
    body = value.strip()
    for opener in _JSON_FENCE_OPENERS:  # applied in sequence, like chained removeprefix
        body = body.removeprefix(opener)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def title(value: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in _TITLE.findall(value))


def two_responses(value: str) -> bool:
    """Exactly two distinct non-empty answers separated by '******'."""
    parts = value.split("******")
    last = len(parts) - 1
    answers = []
    for index, part in enumerate(parts):
        if part.strip():
            answers.append(part)
        elif index not in (0, last):
            return False
    return len(answers) == 2 and answers[0].strip() != answers[1].strip()


def repeat_prompt(value: str, *, prompt_to_repeat: str) -> bool:
    return value.strip().lower().startswith(prompt_to_repeat.strip().lower())


def end_checker(value: str, *, end_phrase: str) -> bool:
    return value.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def quotation(value: str) -> bool:
    value = value.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'
