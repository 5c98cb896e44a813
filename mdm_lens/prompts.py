"""Turning user prompts (strings or ids) into a left-padded batch, and responses back into text."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from jaxtyping import Int

PromptInput = Union[str, Sequence[str], torch.Tensor, Sequence[Sequence[int]]]


@dataclass
class GenerationOutput:
    """What `HookedMDM.generate` returns."""

    texts: list[str]
    tokens: Int[torch.Tensor, "batch gen"]  # response ids (fill after EOS included)
    sequences: Int[torch.Tensor, "batch total"]  # prompt (left-padded) + response
    prompt_length: int
    attention_mask: torch.Tensor | None = None
    # the decode trace (mdm_lens.sampling.trace): the step that unmasked each response position, -1 if never
    decode_step: Int[torch.Tensor, "batch gen"] | None = None
    # with generate(return_history=True): the response after every step (history[s] = output of step s)
    history: Int[torch.Tensor, "steps batch gen"] | None = None


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Left-pad to a common length (masked diffusion samplers append the response on the right)."""
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ValueError("every prompt needs at least one token")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, (None if bool(mask.all()) else mask)


def encode_prompts(
    prompts: PromptInput, tokenizer, *, chat: bool, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Strings go through the chat template (instruct models) and the tokenizer; ids pass through."""
    if isinstance(prompts, torch.Tensor):
        ids = prompts if prompts.dim() == 2 else prompts.unsqueeze(0)
        return ids.long(), None
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts given")
    if all(isinstance(p, str) for p in prompts):
        if tokenizer is None:
            raise ValueError("this model has no tokenizer: pass token ids instead of strings")
        seqs = []
        for p in prompts:
            if chat and not getattr(tokenizer, "chat_template", None):
                warn_no_chat_template(tokenizer)
            if chat and getattr(tokenizer, "chat_template", None):
                seqs.append(
                    list(
                        tokenizer.apply_chat_template(
                            [{"role": "user", "content": p}],
                            add_generation_prompt=True,
                            tokenize=True,
                            return_dict=False,
                        )
                    )
                )
            else:
                seqs.append(tokenizer(p, add_special_tokens=True)["input_ids"])
        return left_pad(seqs, pad_id)
    return left_pad([list(map(int, p)) for p in prompts], pad_id)


def decode_responses(tokens: torch.Tensor, tokenizer, stop_ids: Sequence[int]) -> list[str]:
    """Cut each response at its first stop token (EOS / EOT), then decode without special tokens."""
    if tokenizer is None:
        return [" ".join(map(str, row.tolist())) for row in tokens]
    stops = set(int(s) for s in stop_ids if s is not None)
    texts = []
    for row in tokens.tolist():
        cut = next((i for i, tok in enumerate(row) if tok in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return texts


_warned: set[int] = set()


def warn_no_chat_template(tokenizer) -> None:
    """chat=True with a tokenizer without a template: the prompts go in raw (once per tokenizer)."""
    if id(tokenizer) in _warned:
        return
    _warned.add(id(tokenizer))
    warnings.warn(
        "chat=True, but this tokenizer has no chat template (a model folder without chat_template.jinja?): "
        "the prompts go in raw, without the chat format the model was tuned on. Restore the template, or "
        "pass chat=False to mean raw prompts",
        stacklevel=4,
    )
