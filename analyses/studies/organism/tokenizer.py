"""A byte-level BPE tokenizer for the organism: exact round trips (case, commas, '*', '<<', newlines),
so IFEval checkers see exactly what the model wrote. Built offline from the corpus."""

from __future__ import annotations

from typing import Iterable

from mdm_lens.tiny_tokenizer import LLADA_TEMPLATE

SPECIALS = [
    "<|startoftext|>",
    "<|endoftext|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|mdm_mask|>",
]


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """Train BPE on `texts`; the mask token gets the last id, like LLaDA's mask sits after its vocab."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        special_tokens=SPECIALS[:-1],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.add_special_tokens([SPECIALS[-1]])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        mask_token="<|mdm_mask|>",
        additional_special_tokens=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        padding_side="left",
        chat_template=LLADA_TEMPLATE,
    )
    return fast
