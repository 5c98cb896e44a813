"""An offline word-level tokenizer with LLaDA- or Dream-like special tokens and chat template.

Tiny test models need a real `PreTrainedTokenizerFast` (chat template, mask token, save/reload through
AutoTokenizer) whose ids agree with their config.json; nothing here touches the network.
"""

from __future__ import annotations

from typing import Sequence

DEFAULT_WORDS = (
    "[UNK] . , ! ? : ; ' \" ( ) - 0 1 2 3 4 5 6 7 8 9 "
    "the a an and or but not no yes is are was were be been am i you he she it we they me him her us them "
    "my your his its our their this that these those what which who when where why how all any each every "
    "some many much more most few less one two three four five six seven eight nine ten first last next "
    "in on at to from of for with without about into over under after before between through up down out "
    "do does did have has had can could will would should may might must shall make made say said go went "
    "get got see saw know knew think thought take took come came want give gave use find tell ask work "
    "write wrote answer question word words sentence sentences letter letters list end start response "
    "capital lowercase uppercase title json bullet point points paragraph paragraphs section highlight "
    "comma quote quotation postscript language english include exclude keyword keywords times least "
    "exactly helpful less_than please story poem email essay summary name city country day time year "
    "people man woman child world life hand part place case week company program number group "
    "good new old great high small large big long little own other right left same different important "
    "very also just only then now here there so than too well even back still way again never always "
    "hello hi thanks thank assistant user system cat dog sun moon water fire tree house car book food"
).split()

_STYLE_SPECIALS = {
    "llada": ["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "dream": ["<|beginoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}
_STYLE_MASK = {"llada": "<|mdm_mask|>", "dream": "<|mask|>"}
_STYLE_ROLES = {
    "llada": {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>"},
    "dream": {"bos": "<|beginoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>"},
}

# Our own templates in each family's format (LLaDA: header ids + eot; Dream: Qwen-style im_start/im_end).
LLADA_TEMPLATE = (
    "{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + (m['content'] | trim) + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
DREAM_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_STYLE_TEMPLATE = {"llada": LLADA_TEMPLATE, "dream": DREAM_TEMPLATE}


def tiny_token_ids(
    style: str = "llada", words: Sequence[str] | None = None, vocab_size: int = 320, mask_token_id: int | None = None
) -> dict[str, int]:
    """The id layout `build_test_tokenizer` uses: words, then the specials, fillers, the mask (last id
    by default). Returns {"bos", "eos", "pad", "mask", "vocab_size", <special token>: id ...}."""
    if style not in _STYLE_SPECIALS:
        raise ValueError(f"unknown tokenizer style {style!r}; use one of {sorted(_STYLE_SPECIALS)}")
    words = list(DEFAULT_WORDS if words is None else words)
    ids = {tok: len(words) + i for i, tok in enumerate(_STYLE_SPECIALS[style])}
    first_free = len(words) + len(ids)
    mask = vocab_size - 1 if mask_token_id is None else mask_token_id
    if not first_free <= mask < vocab_size:
        raise ValueError(f"mask id {mask} must lie in [{first_free}, {vocab_size}) for {len(words)} words")
    ids[_STYLE_MASK[style]] = mask
    roles = {r: ids[t] for r, t in _STYLE_ROLES[style].items()}
    return {**roles, "mask": mask, "vocab_size": vocab_size, **ids}


def build_test_tokenizer(
    words: Sequence[str] | None = None,
    *,
    style: str = "llada",
    vocab_size: int = 320,
    mask_token_id: int | None = None,
    chat_template: str | None = None,
):
    """A lowercasing WordLevel tokenizer wrapped in PreTrainedTokenizerFast, with the style's special
    tokens, a chat template and `mask_token_id` where the config expects it."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = list(DEFAULT_WORDS if words is None else words)
    if len(set(words)) != len(words):
        raise ValueError("duplicate words in the vocabulary")
    ids = tiny_token_ids(style, words, vocab_size, mask_token_id)
    specials = _STYLE_SPECIALS[style] + [_STYLE_MASK[style]]
    vocab = {w: i for i, w in enumerate(words)}
    taken = set(vocab.values()) | {ids[t] for t in specials}
    for i in range(vocab_size):
        if i not in taken:
            vocab[f"<|reserved_{i}|>"] = i
    vocab.update({t: ids[t] for t in specials})
    unk = words[0]
    tok = Tokenizer(WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    roles = _STYLE_ROLES[style]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=roles["bos"],
        eos_token=roles["eos"],
        pad_token=roles["pad"],
        unk_token=unk,
        mask_token=_STYLE_MASK[style],
        additional_special_tokens=[t for t in _STYLE_SPECIALS[style] if t not in roles.values()],
        padding_side="left",
        chat_template=chat_template or _STYLE_TEMPLATE[style],
    )
    for t in specials:
        if fast.convert_tokens_to_ids(t) != ids[t]:
            raise AssertionError(f"special token {t} landed on id {fast.convert_tokens_to_ids(t)}, not {ids[t]}")
    return fast
