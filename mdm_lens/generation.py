"""HookedMDM.generate: prompts -> batch -> family sampler with step context -> text."""
from __future__ import annotations

import inspect
from contextlib import ExitStack, nullcontext

import torch

from .prompts import GenerationOutput, decode_responses, encode_prompts


def _token_id(tokenizer, token: str) -> int | None:
    if tokenizer is None:
        return None
    tid = tokenizer.convert_tokens_to_ids(token)
    return None if tid is None or tid == tokenizer.unk_token_id else int(tid)


def special_ids(model) -> dict[str, int | None]:
    """EOS / EOT / pad ids from the tokenizer, falling back to the config."""
    tok, cfg = model.tokenizer, model.config
    eos = getattr(tok, "eos_token_id", None) if tok is not None else None
    eos = eos if eos is not None else cfg.get("eos_token_id")
    eot = _token_id(tok, "<|eot_id|>") or _token_id(tok, "<|im_end|>")
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    pad = pad if pad is not None else cfg.get("pad_token_id", eos)
    return {"eos": eos, "eot": eot, "pad": pad if pad is not None else 0}


def _check_kwargs(fn, kwargs: dict, fixed: set[str]) -> None:
    valid = set(inspect.signature(fn).parameters) - fixed
    bad = sorted(set(kwargs) - valid)
    if bad:
        raise TypeError(f"unknown sampler option(s) {bad} for {fn.__name__}; valid options: {sorted(valid)}")


def run_generation(model, prompts, *, plan=None, chat: bool = True, seed: int | None = None,
                   progress: bool = False, **overrides) -> GenerationOutput:
    from .sampling import dream_generate, llada_generate

    if model.spec.sampler not in ("llada", "dream"):
        raise NotImplementedError(
            f"HookedMDM.generate runs the LLaDA and Dream reference samplers; the {model.spec.name} family uses "
            "transformers' own sampler: call model.model.generate(...) for it (its forward, caches and "
            "run_with_cache work through HookedMDM)")
    ids = special_ids(model)
    input_ids, attn = encode_prompts(prompts, model.tokenizer, chat=chat, pad_id=ids["pad"])
    if bool((input_ids == model.mask_id).any()):
        rows = sorted(set((input_ids == model.mask_id).nonzero()[:, 0].tolist()))
        raise ValueError(f"prompt(s) {rows} contain the mask token id {model.mask_id}; remove it from the prompt")
    device = model.input_device
    input_ids = input_ids.to(device)
    attn = attn.to(device) if attn is not None else None
    kwargs = model.sampler_settings(**overrides)
    bar = on_step = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc="denoising", unit="step", leave=False)

        def on_step(info):          # the sampler itself sets model.step_info (sampling.common.announcing)
            bar.total = info.num_steps
            bar.update(1)

    if seed is not None:
        torch.manual_seed(seed)
    stack = ExitStack()
    try:
        stack.enter_context(model.steer(plan) if plan is not None else nullcontext())
        stack.enter_context(torch.no_grad())
        if model.spec.sampler == "llada":
            _check_kwargs(llada_generate, kwargs, {"model", "prompt", "attention_mask", "on_step"})
            kwargs.setdefault("mask_id", model.mask_id)
            if ids["eos"] is not None:
                kwargs.setdefault("eos_id", ids["eos"])
            if ids["eot"] is not None:
                kwargs.setdefault("eot_id", ids["eot"])
            seqs = llada_generate(model, input_ids, attention_mask=attn, on_step=on_step, **kwargs)
        else:
            _check_kwargs(dream_generate, kwargs, {"model", "input_ids", "attention_mask", "on_step"})
            kwargs.setdefault("mask_token_id", model.mask_id)
            seqs = dream_generate(model, input_ids, attention_mask=attn, on_step=on_step, **kwargs)
            seqs = getattr(seqs, "sequences", seqs)
    finally:
        stack.close()
        if bar is not None:
            bar.close()
    plen = input_ids.shape[1]
    tokens = seqs[:, plen:]
    texts = decode_responses(tokens, model.tokenizer, [ids["eos"], ids["eot"]])
    return GenerationOutput(texts=texts, tokens=tokens.cpu(), sequences=seqs.cpu(), prompt_length=plen,
                            attention_mask=attn.cpu() if attn is not None else None)
