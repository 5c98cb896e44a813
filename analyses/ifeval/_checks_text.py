"""Checkers for keyword, language, length, case and punctuation instructions.

Each function takes the response and the already-validated kwargs of one
instruction and returns whether the response follows it, reproducing the
official google-research / lm-eval ``check_following`` logic (including its
quirks: keywords are regular expressions, letter counts are taken on
``str.lower()``, an undetectable language counts as followed).
"""

from __future__ import annotations

import re

from ._text import LanguageUndetectable, count_sentences, count_words, detect_language, word_tokenize

LESS_THAN, AT_LEAST = "less than", "at least"
RELATIONS = (LESS_THAN, AT_LEAST)

# Characters at which the official first-word extraction stops.
_FIRST_WORD_STOP = frozenset(".,?!'\"")


def compare(actual: int, relation: str, threshold: int) -> bool:
    """The official two-way comparison: 'less than' is strict, anything else is 'at least'."""
    return actual < threshold if relation == LESS_THAN else actual >= threshold


def keywords_existence(value: str, *, keywords) -> bool:
    # Keywords are used as case-insensitive regular expressions, as officially.
    return all(re.search(word, value, flags=re.IGNORECASE) for word in keywords)


def keywords_frequency(value: str, *, keyword: str, frequency: int, relation: str) -> bool:
    hits = len(re.findall(keyword, value, flags=re.IGNORECASE))
    return compare(hits, relation, frequency)


def keywords_forbidden(value: str, *, forbidden_words) -> bool:
    return not any(re.search(r"\b" + word + r"\b", value, flags=re.IGNORECASE) for word in forbidden_words)


def keywords_letter_frequency(value: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    # Counted on the lower-cased text (lower() can change length, e.g. for 'İ').
    return compare(value.lower().count(letter), let_relation, let_frequency)


def response_language(value: str, *, language: str) -> bool:
    try:
        return detect_language(value) == language
    except LanguageUndetectable:
        return True


def number_sentences(value: str, *, num_sentences: int, relation: str) -> bool:
    return compare(count_sentences(value), relation, num_sentences)


def number_paragraphs(value: str, *, num_paragraphs: int) -> bool:
    """Paragraphs split on '***' (one optional whitespace char each side)."""
    parts = re.split(r"\s?\*\*\*\s?", value)
    count = len(parts)
    last = len(parts) - 1
    for index, part in enumerate(parts):
        if part.strip():
            continue
        if index not in (0, last):
            return False  # an empty paragraph between two dividers
        count -= 1
    return count == num_paragraphs


def number_words(value: str, *, num_words: int, relation: str) -> bool:
    return compare(count_words(value), relation, num_words)


def nth_paragraph_first_word(value: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """Paragraphs split on '\\n\\n'; blank ones are not counted but still occupy an index."""
    paragraphs = value.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    target = paragraphs[nth_paragraph - 1].strip()
    if not target:
        return False
    word = target.split()[0].strip().lstrip("'").lstrip('"')
    found = []
    for char in word:
        if char in _FIRST_WORD_STOP:
            break
        found.append(char.lower())  # per character, as the official loop does
    return count == num_paragraphs and "".join(found) == first_word


def capital_word_frequency(value: str, *, capital_frequency: int, capital_relation: str) -> bool:
    capitals = sum(1 for token in word_tokenize(value) if token.isupper())
    return compare(capitals, capital_relation, capital_frequency)


def _english_and(value: str, case_ok: bool) -> bool:
    if not case_ok:
        return False
    try:
        return detect_language(value) == "en"
    except LanguageUndetectable:
        return True


def english_capital(value: str) -> bool:
    return _english_and(value, value.isupper())


def english_lowercase(value: str) -> bool:
    return _english_and(value, value.islower())


def no_comma(value: str) -> bool:
    return "," not in value
