"""The one validation of what users pass as token ids, seeds and Monte-Carlo sizes, shared by `generate`,
the likelihood, collection and the TransformerLens conveniences (sampler values: `generation.check_sampler_settings`).

Why one place: each entry point used to coerce on its own, so the same bad value was refused by one and silently
reinterpreted by another (float ids truncated, `seed="12"` read as the seeds [1, 2], ids past the vocabulary
reaching torch's "index out of range in self"). Every message names the value, what is valid and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import torch

__all__ = [
    "check_finite_result",
    "check_forward_inputs",
    "check_ids_in_vocab",
    "check_mc",
    "check_seed",
    "is_int",
    "is_real",
    "seed_list",
    "token_ids",
    "vocab_size",
]


def is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _bad_dtype(t: torch.Tensor) -> bool:
    return t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool


def token_ids(x: Any, what: str = "input") -> torch.Tensor:
    """`x` (an integer tensor, or nested lists of ints) as a long tensor; floats, bools and strings are refused,
    never truncated or parsed."""
    if isinstance(x, torch.Tensor):
        if _bad_dtype(x):
            raise TypeError(
                f"the {what} is a {x.dtype} tensor; token ids must be an integer tensor (e.g. torch.long), "
                "never rounded from floats: pass the tokenizer's ids (or .long() them yourself if meant)"
            )
        return x.long()
    bad = _first_non_int(x)
    if bad is not None:
        raise TypeError(
            f"the {what} holds {bad!r} ({type(bad).__name__}); token ids must be ints (nested lists of "
            "ints or an integer tensor), never floats, bools or strings"
        )
    return torch.as_tensor(x, dtype=torch.long)


def _first_non_int(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        for v in x:
            b = _first_non_int(v)
            if b is not None:
                return b
        return None
    return None if is_int(x) else (x if x is not None else "None")


def check_ids_in_vocab(ids: torch.Tensor, vocab: int | None, what: str = "input") -> None:
    """Every id in [0, vocab): the embedding table's hard limit (torch would say "index out of range in self")."""
    if vocab is None or ids.numel() == 0:
        return
    out = (ids < 0) | (ids >= vocab)
    if bool(out.any()):
        vals = sorted(set(ids[out].tolist()))[:6]
        raise ValueError(
            f"the {what} holds token ids {vals} outside the vocabulary [0, {vocab}) of this model; "
            "use ids from its tokenizer (model.to_tokens / model.tokenizer)"
        )


def vocab_size(model) -> int | None:
    """Rows of the model's input embedding (a HookedMDM or a bare family model), else its config's vocab_size."""
    inner = getattr(model, "model", model)
    emb = inner.get_input_embeddings() if hasattr(inner, "get_input_embeddings") else None
    if emb is not None:
        return int(emb.num_embeddings)
    cfg = getattr(model, "config", None)
    return cfg.get("vocab_size") if isinstance(cfg, dict) else None


def check_seed(seed: Any, what: str = "seed") -> None:
    if seed is not None and not is_int(seed):
        raise TypeError(
            f"{what}={seed!r} must be an integer (or None for the global RNG); got a "
            f"{type(seed).__name__}" + (": int(...) it yourself if it is a number" if isinstance(seed, str) else "")
        )


def seed_list(seed: Any, n: int) -> list[int | None]:
    """One seed per item: None / an int for all, or a sequence of ints of length n (a str is not a sequence here)."""
    if seed is None or is_int(seed):
        return [seed] * n
    if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence) and not isinstance(seed, torch.Tensor):
        check_seed(seed)
    seeds = list(seed.tolist() if isinstance(seed, torch.Tensor) else seed)
    for s in seeds:
        check_seed(s, "seed entry")
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} pairs: pass one int, or one seed per pair")
    return seeds


def check_mc(mc_num: Any, batch_size: Any) -> None:
    """Monte-Carlo size: `mc_num` rows in mini-batches of `batch_size` (both ints, mc_num a positive multiple)."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an int >= 1 (rows per Monte-Carlo mini-batch)")
    if not is_int(mc_num) or mc_num < batch_size or mc_num % batch_size:
        raise ValueError(
            f"mc_num={mc_num!r} with batch_size={batch_size}: mc_num must be a positive multiple of "
            "batch_size (the estimator averages mc_num // batch_size mini-batches of batch_size rows); "
            "round mc_num to a multiple or lower batch_size"
        )


def check_finite_result(values: Sequence[float], what: str, cause: str) -> None:
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"{what} {bad[:8]} came out non-finite ({[values[i] for i in bad[:3]]}); {cause}")


def check_forward_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cached: bool) -> None:
    """Shapes and dtypes only (no device sync): integer ids, and a mask exactly as wide as the ids (an uncached
    forward; a cached one passes the full canvas's mask with a slice of ids)."""
    if _bad_dtype(input_ids):
        raise TypeError(
            f"input_ids is a {input_ids.dtype} tensor; token ids must be an integer tensor (e.g. torch.long)"
        )
    if (
        attention_mask is not None
        and not cached
        and attention_mask.dim() <= 2
        and tuple(attention_mask.shape) != tuple(input_ids.shape)
    ):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids {tuple(input_ids.shape)}; "
            "pass one 0/1 entry per token ([batch, pos], 0 = padding), or None when nothing is padded"
        )
