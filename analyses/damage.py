"""Damage next to effect: what steering costs a generation, measured per text.

A steering method can win an instruction-following verdict by breaking the text (all caps reached through
`'I\ufffd,?\\n IT IS SIMPLE.'`). Each generation therefore gets, next to its verdict:
* `nll`: NLL per token (nats) of the response under the *unsteered* model, LLaDA's Monte-Carlo estimate
  (`mdm_lens.likelihood.response_nlls`): how surprised the original model is by the text;
* `degenerate` / `reasons`: rule-based flags for text that is broken whatever the model thinks (below);
* `n_chars`, `n_tokens`: its length in characters and in the model's tokens (the NLL's denominator).

Degeneracy rules (each one a reason; thresholds are arguments of `degeneracy`):
* `empty`: no character other than whitespace.
* `replacement_char`: U+FFFD, what a decoder emits for an invalid byte sequence (a token split mid-character).
* `non_printable`: a control character other than tab / newline / carriage return, a surrogate, a
  private-use or an unassigned code point (Unicode categories Cc, Cs, Co, Cn). Format characters (Cf, e.g.
  the zero-width joiner inside emoji) are allowed.
* `repetition` (runaway loop): the text is split into lower-cased words and single punctuation marks; a
  token is "repeated" when it lies inside an n-gram (n = `ngram`, 4) that already occurred earlier in the text.
  Flagged when at least `max_repeated` (50%) of the tokens are repeated, on texts of at least 2n tokens. Prose
  repeats few 4-grams; a loop repeats everything after its first period ("a cat. a cat. a cat. ..." ~ 100%).
* `stutter`: the same word (letters, case-insensitive) or the same ',' / ';' twice back to back ("the the",
  ",,"), at `min_stutters` (2) places or more. Prose has one such slip at most ("that that"); a wrecked text
  has several (`' and the, the the LOOKS,,'` has two).
* `too_short`: fewer than `min_words` (2) words, but not empty: a one-word answer ("Yes.", "Paris") to prompts
  that ask for prose or a list is a broken generation, not a short good one (`min_words=1` turns this off).
* `mask_token` (set by `damage` only): the text tokenizes to the model's mask id, so it cannot be scored.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

_TOKEN = re.compile(r"\w+|[^\w\s]")
_ALLOWED_CONTROL = {"\t", "\n", "\r"}
_BAD_CATEGORIES = {"Cc", "Cs", "Co", "Cn"}
_STUTTER_MARKS = {",", ";"}


def text_tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks: the units the repetition rules count."""
    return _TOKEN.findall(text.lower())


def repeated_fraction(tokens: Sequence[str], ngram: int = 4) -> float:
    """Share of tokens inside an n-gram that already occurred earlier (0 when shorter than 2n tokens)."""
    if ngram < 1:
        raise ValueError(f"ngram={ngram}: must be >= 1")
    if len(tokens) < 2 * ngram:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(tokens)
    for i in range(len(tokens) - ngram + 1):
        gram = tuple(tokens[i : i + ngram])
        if gram in seen:
            covered[i : i + ngram] = [True] * ngram
        seen.add(gram)
    return sum(covered) / len(tokens)


def stutters(tokens: Sequence[str]) -> int:
    """Places where a word (letters only) or a ',' / ';' follows itself."""
    return sum(1 for a, b in zip(tokens, tokens[1:]) if a == b and (a.isalpha() or a in _STUTTER_MARKS))


def degeneracy(
    text: str, *, ngram: int = 4, max_repeated: float = 0.5, min_stutters: int = 2, min_words: int = 2
) -> list[str]:
    """The degeneracy reasons that apply to `text` (empty list: not degenerate); rules in the module docstring."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not 0 < max_repeated <= 1:
        raise ValueError(f"max_repeated={max_repeated}: must be in (0, 1] (a share of the tokens)")
    if min_stutters < 1:
        raise ValueError(f"min_stutters={min_stutters}: must be >= 1")
    if min_words < 1:
        raise ValueError(f"min_words={min_words}: must be >= 1 (1 turns the too_short rule off)")
    reasons = []
    if not text.strip():
        reasons.append("empty")
    if "\ufffd" in text:
        reasons.append("replacement_char")
    if any(unicodedata.category(ch) in _BAD_CATEGORIES and ch not in _ALLOWED_CONTROL for ch in text):
        reasons.append("non_printable")
    tokens = text_tokens(text)
    if repeated_fraction(tokens, ngram) >= max_repeated:
        reasons.append("repetition")
    if stutters(tokens) >= min_stutters:
        reasons.append("stutter")
    words = sum(1 for t in tokens if t[0].isalnum())
    if 0 < words < min_words:
        reasons.append("too_short")
    return reasons


def damage(
    model_unsteered,
    prompts: Sequence,
    texts: Sequence[str],
    *,
    mc_num: int = 128,
    batch_size: int = 16,
    seed: int = 0,
    chat: bool = True,
    max_rows: int | None = None,
    progress: bool = False,
    **rules,
) -> list[dict]:
    """One record per (prompt, text): {nll, degenerate, reasons, n_chars, n_tokens}.

    `model_unsteered`: the model with no plan attached (damage is measured against the original model).
    `prompts`: what the text answered, as given to `generate` (strings go through the chat template when
    `chat`). `nll`: per-token NLL in nats (`response_nlls`, seed `seed` for every text, so the same text
    scores the same in any run or process); None when the text has no tokens or contains the mask token.
    `rules`: thresholds for `degeneracy`.
    """
    from mdm_lens.likelihood import encode_pair, response_nlls

    prompts, texts = list(prompts), list(texts)
    if len(prompts) != len(texts):
        raise ValueError(f"got {len(prompts)} prompts for {len(texts)} texts: pass one prompt per text")
    records, todo = [], []
    for i, (prompt, text) in enumerate(zip(prompts, texts)):
        reasons = degeneracy(text, **rules)
        p_ids, r_ids = encode_pair(model_unsteered, prompt, text, chat=chat)
        if bool((r_ids == model_unsteered.mask_id).any()):
            reasons.append("mask_token")
        records.append(
            {
                "nll": None,
                "degenerate": bool(reasons),
                "reasons": reasons,
                "n_chars": len(text),
                "n_tokens": int(r_ids.numel()),
            }
        )
        if r_ids.numel() and "mask_token" not in reasons:
            todo.append((i, (p_ids, r_ids)))
    if todo:
        nlls = response_nlls(
            model_unsteered,
            [pair for _, pair in todo],
            mc_num,
            batch_size,
            seed=seed,
            chat=chat,
            max_rows=max_rows,
            progress=progress,
        )
        for (i, _), nll in zip(todo, nlls):
            records[i]["nll"] = float(nll)
    return records
