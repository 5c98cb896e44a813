"""Prune SmolLM2's byte-level BPE vocabulary to the tokens corpus v3 uses, keeping encodings identical.

Kept: the special tokens, the 256 byte symbols (any text still encodes, byte by byte at worst), every token
the corpus encodes to, and every token of their merge trees (BPE builds a token through intermediate merges;
each token has one creating merge, so keeping the trees keeps every merge that fires on corpus text).
Ids are renumbered in their old order; `check_same_encoding` proves the corpus encodes to the same tokens.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import corpus_v3 as c


def vocab_texts(seed: int = 0) -> list[str]:
    """Every prompt and response shape corpus v3 makes, across all splits (templates × subjects × kinds)."""
    from .corpus import KINDS

    rng = random.Random(f"vocab:{seed}")
    out: list[str] = list(c.corpus_text())
    for _ in range(3):
        for t in c.REQUESTS:
            for topic in c.TOPICS:
                for kind in [None, *sorted(KINDS)]:
                    ex = c.make_example(kind, topic, t, rng, comply=rng.random() < 0.5)
                    out += [ex.prompt, ex.response]
        for t in c.ASK:
            for cat, acts in c.HARMFUL.items():
                out += [x for a in acts for x in (t.format(a=a), c.refusal_item(True, a, t, rng, cat).response)]
            out += [x for a in c.HARMLESS for x in (t.format(a=a), c.refusal_item(False, a, t, rng).response)]
        for s in c.SUBJECTS:
            out += [t.format(s=s) for t in c.REVIEW] + [
                t.format(s=s, p=p) for t in c.ASK_POLAR for p in ("positive", "negative")
            ]
            out += [c.review(s, True, rng), c.review(s, False, rng)]
    return out


def merge_parents(tok_json: dict) -> dict[str, tuple[str, str]]:
    merges = tok_json["model"]["merges"]
    pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    return {a + b: (a, b) for a, b in pairs}


def kept_tokens(tokenizer, texts: list[str], chat_texts: list[str]) -> list[int]:
    """Old ids to keep (sorted): specials, bytes, the tokens of `texts` (plain) and `chat_texts` (with specials),
    and their merge trees."""
    from tokenizers import pre_tokenizers

    j = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = j["model"]["vocab"]
    parents = merge_parents(j)
    keep = {a["content"] for a in j["added_tokens"]} | set(pre_tokenizers.ByteLevel.alphabet())
    for batch in (texts, chat_texts):
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            keep.update(tokenizer.convert_ids_to_tokens(ids))
    stack = list(keep)
    while stack:
        t = stack.pop()
        for p in parents.get(t, ()):
            if p not in keep:
                keep.add(p)
                stack.append(p)
    ids = {vocab[t] for t in keep if t in vocab} | {a["id"] for a in j["added_tokens"]}
    return sorted(ids)


def pruned_tokenizer_json(tokenizer, keep_ids: list[int]) -> str:
    """tokenizer.json text of the pruned vocabulary (ids renumbered in old order, merges filtered)."""
    j = json.loads(tokenizer.backend_tokenizer.to_str())
    old = {i: t for t, i in j["model"]["vocab"].items()}
    new_id = {old_id: n for n, old_id in enumerate(keep_ids)}
    vocab = {old[i]: new_id[i] for i in keep_ids if i in old}
    merges = []
    for m in j["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    j["model"]["vocab"], j["model"]["merges"] = vocab, merges
    for a in j["added_tokens"]:
        a["id"] = new_id[a["id"]]
    return json.dumps(j, ensure_ascii=False)


def build_pruned(tokenizer, keep_ids: list[int], folder: str | Path, mask_token: str, chat_template: str | None = None):
    """Write and return the pruned PreTrainedTokenizerFast (chat template, special tokens, mask token kept)."""
    from transformers import PreTrainedTokenizerFast

    from mdm_lens.safefile import write_text_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(pruned_tokenizer_json(tokenizer, keep_ids), str(folder / "tokenizer.json"))
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"),
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
        unk_token=tokenizer.unk_token,
        mask_token=mask_token,
        padding_side="left",
        chat_template=chat_template or tokenizer.chat_template,
    )
    tok.save_pretrained(str(folder))
    return tok


def check_same_encoding(old_tok, new_tok, keep_ids: list[int], texts: list[str]) -> int:
    """Raise unless every text encodes to the same tokens under both tokenizers; returns the texts checked."""
    new_id = {o: n for n, o in enumerate(keep_ids)}
    a = old_tok(texts, add_special_tokens=False)["input_ids"]
    b = new_tok(texts, add_special_tokens=False)["input_ids"]
    for text, x, y in zip(texts, a, b):
        mapped = [new_id.get(i, -1) for i in x]
        if mapped != list(y):
            raise AssertionError(f"pruned tokenizer encodes {text!r} differently: {mapped} vs {list(y)}")
        if new_tok.decode(y) != text:
            raise AssertionError(f"pruned tokenizer does not round-trip {text!r}: {new_tok.decode(y)!r}")
    return len(texts)
