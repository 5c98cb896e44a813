"""Settings compared against the reference samplers (shared by the golden maker and the test)."""

import torch

LLADA_CASES = [
    dict(steps=8, gen_length=8, block_length=8),
    dict(steps=8, gen_length=8, block_length=4),
    dict(steps=8, gen_length=8, block_length=2),
    dict(steps=4, gen_length=8, block_length=4),
    dict(steps=8, gen_length=8, block_length=4, temperature=0.7),
    dict(steps=8, gen_length=8, block_length=4, remasking="random"),
    dict(steps=8, gen_length=8, block_length=8, temperature=0.7, remasking="random"),
    dict(steps=8, gen_length=8, block_length=4, cfg_scale=1.5, padded=True),
    dict(steps=8, gen_length=8, block_length=4, temperature=0.5, cfg_scale=1.0, padded=True),
    dict(steps=8, gen_length=8, block_length=4, padded=True),
    dict(steps=8, gen_length=8, block_length=4, temperature=0.9, padded=True),
    dict(steps=8, gen_length=8, block_length=4, logits_eos_inf=True),
    dict(steps=8, gen_length=8, block_length=4, confidence_eos_eot_inf=True, temperature=0.3),
    dict(steps=16, gen_length=16, block_length=4, confidence_eos_eot_inf=True, padded=True),
]
DREAM_CASES = [
    dict(max_new_tokens=8, steps=8, alg="origin"),
    dict(max_new_tokens=8, steps=8, alg="origin", temperature=0.5),
    dict(max_new_tokens=8, steps=4, alg="maskgit_plus"),
    dict(max_new_tokens=8, steps=8, alg="maskgit_plus", temperature=0.5, top_p=0.9),
    dict(max_new_tokens=8, steps=8, alg="topk_margin"),
    dict(max_new_tokens=8, steps=8, alg="topk_margin", temperature=0.5, top_k=5),
    # greedy entropy with top_k: over the full 320-token vocab the tiny random model's distributions are nearly
    # uniform, so the positions' entropies differ by ~1e-6 and the ranking flips with float32 round-off
    # (it did between machines); top_k=5 keeps a margin (test_sampling.py checks it)
    dict(max_new_tokens=8, steps=8, alg="entropy", top_k=5),
    dict(max_new_tokens=8, steps=8, alg="entropy", temperature=0.2, top_p=0.95),
    dict(max_new_tokens=8, steps=8, alg="entropy", alg_temp=0.5, temperature=0.2),
    dict(max_new_tokens=8, steps=8, alg="maskgit_plus", alg_temp=0.5, padded=True),
    # top_p 0.9, not 0.95: at 0.95 a top-p cut sat within 3e-6 of a tie (the margin check flipped it)
    dict(max_new_tokens=8, steps=8, alg="entropy", temperature=0.2, top_p=0.9, padded=True),
    dict(max_new_tokens=8, steps=8, alg="origin", temperature=0.5, padded=True),
]


def prompts(padded: bool, vocab: int = 250):
    """A batch of 3 prompts; `padded` left-pads two of them (pad id 275) with an attention mask."""
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(0, vocab, (3, 6), generator=g)
    if not padded:
        return ids, None
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :1] = 0
    ids = ids.masked_fill(mask == 0, 275)
    return ids, mask


def case_seed(i: int) -> int:
    return 1000 + i
