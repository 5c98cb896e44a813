"""`test_prompt`, TransformerLens's first-look helper, for a denoising loop: TL prints the top predictions after a
prompt once; a masked diffusion model predicts every still-masked position at every step, so this prints, per step,
the top-k tokens at each masked response position (and the answer token's rank and probability where given), and
returns the same as records. It runs one ordinary `model.generate`, so the tokens are those of that call."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskedPrediction:
    """One masked response position at one step: its top-k tokens and probabilities (and the answer's rank)."""

    step: int
    position: int  # response position (0 = first generated token)
    top_tokens: list[str]
    top_ids: list[int]
    top_probs: list[float]
    answer_rank: int | None = None  # 0 = the top prediction; None when no answer token is expected here
    answer_prob: float | None = None


def test_prompt(
    prompt: str,
    answer: str | None,
    model,
    *,
    top_k: int = 5,
    chat: bool = True,
    print_details: bool = True,
    seed: int | None = 0,
    **sampler_kwargs,
) -> list[MaskedPrediction]:
    """TL's `test_prompt(prompt, answer, model)` over the denoising steps. `answer`'s tokens are expected at the
    first response positions (rank and probability are reported there). Sampler options as `model.generate`."""
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be >= 1")
    answer_ids = [] if answer is None else model.to_tokens(answer)[0].tolist()
    records: list[MaskedPrediction] = []

    def look(logits: torch.Tensor, ctx) -> None:
        if ctx.step is None or ctx.prompt_length is None:
            return
        if model.spec.logits_shift:  # Dream: the state at j-1 predicts token j (as its sampler reads it)
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        probs = logits[0].float().softmax(-1)
        for j in ctx.masked[0].nonzero().flatten().tolist():
            p, ids = probs[j].topk(top_k)
            pos = j - ctx.prompt_length
            rank = prob = None
            if pos < len(answer_ids):
                a = answer_ids[pos]
                rank, prob = int((probs[j] > probs[j, a]).sum()), float(probs[j, a])
            records.append(
                MaskedPrediction(
                    ctx.step,
                    pos,
                    [model.tokenizer.decode([i]) for i in ids.tolist()],
                    ids.tolist(),
                    [round(float(x), 6) for x in p],
                    rank,
                    prob,
                )
            )

    with model.hooks({"hook_logits": look}):
        out = model.generate([prompt], chat=chat, seed=seed, **sampler_kwargs)
    if print_details:
        print(f"prompt: {prompt!r}" + ("" if answer is None else f"  answer: {answer!r} = {answer_ids}"))
        for r in records:
            tops = "  ".join(f"{t!r} {p:.2f}" for t, p in zip(r.top_tokens, r.top_probs))
            extra = "" if r.answer_rank is None else f"   answer rank {r.answer_rank} p={r.answer_prob:.3f}"
            print(f"step {r.step:>3} pos {r.position:>3}: {tops}{extra}")
        print(f"generated: {out.texts[0]!r}")
    return records


test_prompt.__test__ = False  # pytest: a library function, not a test


def decode_order(model, out, row: int = 0) -> list[tuple[int, int, str]]:
    """`(step, position, token)` for one response of `model.generate`, in the order the sampler unmasked them
    (`out.decode_step`; ties by position). Tokens are shown as `repr` of their text with special tokens spelled out
    (`'<|endoftext|>'`, `'<|eot_id|>'`), so EOS fill, whitespace and empty strings stay visible."""
    if out.decode_step is None:
        raise ValueError("this output has no decode trace (DiffusionGemma has no mask token to trace)")
    steps, toks = out.decode_step[row].tolist(), out.tokens[row].tolist()
    order = sorted((s, j) for j, s in enumerate(steps) if s >= 0)
    tok = model.tokenizer
    return [(s, j, repr(tok.decode([toks[j]], skip_special_tokens=False))) for s, j in order]
