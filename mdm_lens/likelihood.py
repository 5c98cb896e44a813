"""LLaDA's Monte-Carlo log-likelihood of an answer given a prompt, batched over many pairs.

The estimator (LLaDA paper, Appendix B.5 / eq. 6; `get_log_likelihood` in ML-GSAI/LLaDA): for each Monte-Carlo
row, mask exactly `c` of the answer's `L` tokens (chosen uniformly), run the mask predictor once, and score
`sum over masked positions of -log p(true token) / (c / L)`. Averaged over rows this is an unbiased estimate of
the masked-diffusion ELBO, a lower bound on `log p(answer | prompt)`; its negative is the NLL upper bound.

Variance reduction, as in the reference: the `batch_size` rows of one mini-batch get evenly spaced mask
counts (`c = k, k + L/b, ...` rounded, wrapped into 1..L, with one random offset `k`), so `batch_size` is part of
the estimator, not only a memory knob. `mc_num // batch_size` mini-batches are averaged.

Random draws and equality with the reference. Per mini-batch the reference draws, in this order, one
`randint` offset on the model's device and then one CPU `randperm(L)` per row. We draw the same numbers in
the same order from:
* `seed=None`: the global generators, exactly like the reference, so `torch.manual_seed(s)` followed by
  `log_likelihood(...)` equals `torch.manual_seed(s)` followed by `get_log_likelihood(...)`, and a run of
  `log_likelihoods` over pairs equals calling the reference on each pair in turn;
* `seed=s` (int): two local generators (one on the model's device, one on the CPU, both seeded with `s`;
  one shared generator when the model is on the CPU), the global RNG untouched. A fresh generator seeded with
  `s` replays the stream of the default generator after `torch.manual_seed(s)`, so every pair's estimate
  equals `torch.manual_seed(s); get_log_likelihood(model, prompt, answer, ...)`. Each pair restarts from `s`:
  its estimate does not depend on which other pairs share the call, their order, or the process that runs it.
A sequence of ints gives each pair its own seed.

Dream-style models (`model.spec.logits_shift`) predict token j from position j-1; their logits are shifted
one place right before scoring, as Dream's sampler does. Logits are scored in float32 at least (equal to the
reference in float32; more accurate than the reference's bf16 cross-entropy on a bf16 model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int

from .prompts import encode_prompts
from .validate import check_finite_result, check_ids_in_vocab, check_mc, seed_list, token_ids, vocab_size

TextOrIds = Union[str, torch.Tensor, Sequence[int]]
Pair = tuple[TextOrIds, TextOrIds]


@dataclass
class _Chunk:
    """One reference mini-batch of one pair: `b` noisy copies of prompt + answer."""

    pair: int
    seq: Int[torch.Tensor, " pos"]
    noisy: Int[torch.Tensor, "b pos"]
    ratio: Float[torch.Tensor, " b"]  # fraction of the answer masked in each row (c / L)
    prompt_len: int


def _to_ids(x: TextOrIds, model, *, what: str, chat: bool) -> torch.Tensor:
    if isinstance(x, str):
        tok = getattr(model, "tokenizer", None)
        if tok is None:
            raise ValueError(f"the model has no tokenizer: pass the {what} as token ids instead of a string")
        if what == "prompt":
            ids, _ = encode_prompts([x], tok, chat=chat, pad_id=0)
            return ids[0]
        return torch.as_tensor(tok(x, add_special_tokens=False)["input_ids"], dtype=torch.long)
    ids = token_ids(x, what)
    if ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.dim() != 1:
        raise ValueError(f"the {what} must be a string or a 1-D sequence of token ids; got shape {tuple(ids.shape)}")
    return ids.cpu()


def encode_pair(model, prompt: TextOrIds, answer: TextOrIds, *, chat: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt ids, answer ids): a string prompt goes through the chat template as `generate` does
    (`chat=False`: plain tokenizer); a string answer is tokenized without special tokens; ids pass through."""
    return _to_ids(prompt, model, what="prompt", chat=chat), _to_ids(answer, model, what="answer", chat=chat)


def _check(mc_num: int, batch_size: int, cfg_scale: float) -> None:
    """The same checks `generate` makes (mdm_lens.validate, generation.check_sampler_settings)."""
    from .generation import check_sampler_settings

    check_mc(mc_num, batch_size)
    check_sampler_settings({"cfg_scale": cfg_scale})


def _draw(seq, prompt_len: int, b: int, mask_id: int, gen_dev, gen_cpu, device):
    """One mini-batch of masks, drawing the same numbers in the same order as the reference."""
    n = seq.shape[0] - prompt_len
    k = torch.randint(1, n + 1, (), device=device, generator=gen_dev)
    counts = torch.linspace(float(k), k + (b - 1) * (n / b), steps=b, device=device).round().long()
    counts = (counts - 1) % n + 1
    # Row i of the reference masks the first c_i slots of arange(n) and then reorders them by a permutation
    # p: slot j ends masked iff p[j] < c_i.
    perms = torch.stack([torch.randperm(n, generator=gen_cpu) for _ in range(b)]).to(device)
    answer_mask = perms < counts[:, None]
    is_mask = torch.cat([torch.zeros(b, prompt_len, dtype=torch.bool, device=device), answer_mask], dim=1)
    noisy = torch.where(is_mask, torch.as_tensor(mask_id, device=device), seq[None].to(device))
    return noisy, counts / n


def _forward(model, chunks: list[_Chunk], cfg_scale: float, mask_id: int, shift: bool) -> list[torch.Tensor]:
    """Logits for the rows of several chunks in one forward (right-padded when lengths differ)."""
    width = max(c.noisy.shape[1] for c in chunks)
    device = chunks[0].noisy.device
    rows, keep, prompt = [], [], []
    for c in chunks:
        b, p = c.noisy.shape
        pad = width - p
        rows.append(F.pad(c.noisy, (0, pad), value=mask_id))
        keep.append(torch.arange(width, device=device).expand(b, width) < p)
        prompt.append(torch.arange(width, device=device).expand(b, width) < c.prompt_len)
    ids, keep, prompt = torch.cat(rows), torch.cat(keep), torch.cat(prompt)
    if cfg_scale > 0:
        ids = torch.cat([ids, ids.masked_fill(prompt, mask_id)])
        keep = torch.cat([keep, keep])
    attn = None if bool(keep.all()) else keep.long()
    logits = model(ids, attention_mask=attn) if attn is not None else model(ids)
    logits = logits.logits if hasattr(logits, "logits") else logits
    if cfg_scale > 0:
        cond, uncond = logits.chunk(2, dim=0)
        logits = uncond + (cfg_scale + 1) * (cond - uncond)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    out, start = [], 0
    for c in chunks:
        b, p = c.noisy.shape
        lg = logits[start : start + b, :p]
        if shift:
            lg = torch.cat([lg[:, :1], lg[:, :-1]], dim=1)
        out.append(lg)
        start += b
    return out


def _chunk_loss(c: _Chunk, logits, mask_id: int) -> float:
    masked: Bool[torch.Tensor, "b pos"] = c.noisy == mask_id
    target = c.seq.to(c.noisy.device)[None].expand_as(c.noisy)
    ratio = c.ratio[:, None].expand(c.noisy.shape)
    loss = F.cross_entropy(logits[masked], target[masked], reduction="none") / ratio[masked]
    return (loss.sum() / c.noisy.shape[0]).item()


def _generators(seed, device):
    if seed is None:
        return None, None
    cpu = torch.Generator().manual_seed(int(seed))
    if torch.device(device).type == "cpu":
        return cpu, cpu
    return torch.Generator(device=device).manual_seed(int(seed)), cpu


def _model_device(model) -> torch.device:
    if hasattr(model, "input_device"):
        return model.input_device
    return next(model.parameters()).device


def _encode_pairs(model, pairs: list[Pair], mask_id: int, shift: bool, chat: bool, vocab: int | None) -> list[tuple]:
    """(prompt ids, answer ids) per pair, refusing what the estimator cannot score (an empty answer, an empty
    prompt under a shifted-logits family, the mask id inside the text), naming the pair."""
    encoded = []
    for i, (prompt, answer) in enumerate(pairs):
        p, a = encode_pair(model, prompt, answer, chat=chat)
        check_ids_in_vocab(p, vocab, f"prompt of pair {i}")
        check_ids_in_vocab(a, vocab, f"answer of pair {i}")
        if a.numel() == 0:
            raise ValueError(f"pair {i}: the answer has no tokens; its likelihood is undefined (drop empty answers)")
        if shift and p.numel() == 0:
            raise ValueError(
                f"pair {i}: empty prompt; this model predicts token j from position j-1, so the "
                "first answer token needs a prompt token (add a BOS token)"
            )
        for name, ids in (("prompt", p), ("answer", a)):
            if bool((ids == mask_id).any()):
                raise ValueError(
                    f"pair {i}: the {name} contains the mask token id {mask_id}; the estimator would "
                    "score it as a masked position. Remove it."
                )
        encoded.append((p, a))
    return encoded


@torch.no_grad()
def log_likelihoods(
    model,
    pairs: Iterable[Pair],
    mc_num: int = 128,
    batch_size: int = 16,
    cfg_scale: float = 0.0,
    mask_id: int | None = None,
    *,
    seed: int | Sequence[int] | None = None,
    chat: bool = True,
    max_rows: int | None = None,
    progress: bool = False,
) -> list[float]:
    """Monte-Carlo log-likelihood (nats, a lower bound) of each answer given its prompt.

    `pairs`: (prompt, answer) with strings or token ids (see `encode_pair`). `seed`: see the module docstring
    (None = global RNG, as the reference). `max_rows`: rows per forward (default `batch_size`, i.e. one reference
    mini-batch per forward, bit-equal to the reference); larger values pack mini-batches of several pairs into
    one right-padded forward (faster on a GPU; equal to float rounding).
    """
    _check(mc_num, batch_size, cfg_scale)
    from .no_mask import require_mask_token

    require_mask_token(model, "the Monte-Carlo likelihood (log_likelihoods / response_nlls)")
    pairs = list(pairs)
    mask_id = int(model.mask_id if mask_id is None else mask_id)
    max_rows = batch_size if max_rows is None else int(max_rows)
    if max_rows < batch_size:
        raise ValueError(
            f"max_rows={max_rows}: must be >= batch_size={batch_size} (one mini-batch per forward at least)"
        )
    seeds = seed_list(seed, len(pairs))
    vocab = vocab_size(model)
    shift = bool(getattr(getattr(model, "spec", None), "logits_shift", False))
    device = _model_device(model)
    encoded = _encode_pairs(model, pairs, mask_id, shift, chat, vocab)

    n_batches = mc_num // batch_size
    totals = [[] for _ in pairs]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs) * n_batches, desc="likelihood", unit="batch", leave=False)
    pending: list[_Chunk] = []

    def flush():
        for c, lg in zip(pending, _forward(model, pending, cfg_scale, mask_id, shift)):
            totals[c.pair].append(_chunk_loss(c, lg, mask_id))
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    try:
        for i, (p, a) in enumerate(encoded):
            seq = torch.cat([p, a])
            gen_dev, gen_cpu = _generators(seeds[i], device)
            for _ in range(n_batches):
                noisy, ratio = _draw(seq, p.numel(), batch_size, mask_id, gen_dev, gen_cpu, device)
                if pending and (len(pending) + 1) * batch_size > max_rows:
                    flush()
                pending.append(_Chunk(i, seq.to(device), noisy, ratio, p.numel()))
        if pending:
            flush()
    finally:
        if bar is not None:
            bar.close()
    out = [-sum(t) / len(t) for t in totals]
    check_finite_result(
        out,
        "log-likelihoods of pairs",
        "a hook or plan attached to the model produced NaN/inf "
        "activations (the estimate would be meaningless); check it, e.g. with model.hooks({}) removed",
    )
    return out


def log_likelihood(
    model,
    prompt: TextOrIds,
    answer: TextOrIds,
    mc_num: int = 128,
    batch_size: int = 16,
    cfg_scale: float = 0.0,
    mask_id: int | None = None,
    *,
    seed: int | None = None,
    chat: bool = True,
) -> float:
    """LLaDA's Monte-Carlo log-likelihood (nats) of `answer` given `prompt`; `get_log_likelihood`'s signature.

    Equal to the reference for the same seed (module docstring). `mask_id` defaults to the model's.
    """
    return log_likelihoods(model, [(prompt, answer)], mc_num, batch_size, cfg_scale, mask_id, seed=seed, chat=chat)[0]


def response_nlls(
    model,
    pairs: Iterable[Pair],
    mc_num: int = 128,
    batch_size: int = 16,
    cfg_scale: float = 0.0,
    mask_id: int | None = None,
    *,
    seed: int | Sequence[int] | None = 0,
    chat: bool = True,
    max_rows: int | None = None,
    progress: bool = False,
) -> list[float]:
    """NLL per token of each response: `-log_likelihood(prompt, response) / n_response_tokens`, in nats.

    The Monte-Carlo log-likelihood is an ELBO (a lower bound on log p), so this is an upper bound on the true
    per-token NLL, estimated: a bounded-variance average over `mc_num` masked copies. Seeded (default 0) so the
    same text scores the same wherever it is scored; texts of equal token length compared under one seed share
    their mask draws, which makes their difference less noisy.
    """
    pairs = [encode_pair(model, p, r, chat=chat) for p, r in pairs]
    lengths = [r.numel() for _, r in pairs]
    lls = log_likelihoods(
        model, pairs, mc_num, batch_size, cfg_scale, mask_id, seed=seed, chat=chat, max_rows=max_rows, progress=progress
    )
    return [-ll / n for ll, n in zip(lls, lengths)]


def response_nll(
    model,
    prompt_ids: TextOrIds,
    response_ids: TextOrIds,
    mc_num: int = 128,
    batch_size: int = 16,
    cfg_scale: float = 0.0,
    mask_id: int | None = None,
    *,
    seed: int | None = 0,
    chat: bool = True,
) -> float:
    """NLL per token (nats) of one response given its prompt; see `response_nlls`."""
    return response_nlls(
        model, [(prompt_ids, response_ids)], mc_num, batch_size, cfg_scale, mask_id, seed=seed, chat=chat
    )[0]
