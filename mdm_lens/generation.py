"""HookedMDM.generate: prompts -> batch -> family sampler with step context -> text.

Reliability lives here too, once for every entry point (generate, the nnsight envelope, samplers driven on
the wrapper): sampler settings are checked where they are merged (`check_sampler_settings`, called by
`HookedMDM.sampler_settings`), prompts before they are encoded, logits once per denoising step
(`check_step_logits`, called by `HookedMDM.forward`: one bool read per step, no per-hook sync).

Position limits, per family: LLaDA and Dream compute RoPE for any position, so neither has a hard limit;
past the trained length (LLaDA `max_sequence_length`, Dream `max_position_embeddings`) generation warns
once per model and length and runs.
"""

from __future__ import annotations

import math
import warnings
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any, Iterator

import torch

from .prompts import GenerationOutput, decode_responses, encode_prompts
from .validate import check_ids_in_vocab, check_seed, is_int, is_real, vocab_size

POSITIVE_INTS = ("steps", "gen_length", "block_length", "max_new_tokens")
# Options that act together, per sampler: once a caller passes any member, no recommended (or checkpoint) value
# of that group is merged in, and the others keep the sampler function's defaults. Dream's recommended
# top_p=0.95 beside an explicit temperature=0.0 would otherwise change which tokens win (Dream's own
# `diffusion_generate(temperature=0.0, ...)` uses top_p=None); options outside any group merge one by one.
SETTING_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "dream": (("temperature", "top_p", "top_k"), ("alg", "alg_temp")),
}
_warned_positions: set[tuple[int, int]] = set()


class NonFiniteLogitsError(FloatingPointError):
    """A denoising step produced NaN or inf logits: the sampler would turn them into garbage tokens."""


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


def without_touched_groups(defaults: dict[str, Any], overrides: dict[str, Any], sampler: str) -> dict[str, Any]:
    """`defaults` less every group of `SETTING_GROUPS[sampler]` that `overrides` touches (see there)."""
    drop = {k for group in SETTING_GROUPS.get(sampler, ()) if set(group) & set(overrides) for k in group}
    return {k: v for k, v in defaults.items() if k not in drop}


# ---------------------------------------------------------------------------------------------- validation
_is_int, _is_real = is_int, is_real  # the one definition: mdm_lens.validate


def check_sampler_settings(settings: dict[str, Any], source: dict[str, str] | None = None) -> dict[str, Any]:
    """Refuse sampler values the reference samplers would misuse silently (negative temperature, NaN,
    cfg_scale < 0 turning CFG off, top_k = 0, float step counts). Keys it does not know pass through."""
    source = source or {}

    def bad(key: str, want: str) -> ValueError:
        where = f" (from {source[key]})" if key in source else ""
        return ValueError(f"{key}={settings[key]!r}{where} is invalid: {key} must be {want}")

    for key in POSITIVE_INTS:
        if key in settings and settings[key] is not None and not (_is_int(settings[key]) and settings[key] > 0):
            raise bad(key, "a positive integer (>= 1)")
    for key in ("temperature", "cfg_scale", "alg_temp"):
        v = settings.get(key)
        if v is None and key == "alg_temp":
            continue
        if key in settings and not (_is_real(v) and math.isfinite(v) and v >= 0):
            raise bad(
                key,
                "a finite number >= 0"
                + (" (0 turns classifier-free guidance off)" if key == "cfg_scale" else " (0 is greedy)"),
            )
    if settings.get("top_p") is not None and not (_is_real(settings["top_p"]) and 0 < settings["top_p"] <= 1):
        raise bad("top_p", "None or a number in (0, 1] (1 keeps every token)")
    if settings.get("top_k") is not None and not (_is_int(settings["top_k"]) and settings["top_k"] >= 1):
        raise bad("top_k", "None or an integer >= 1")
    if "eps" in settings and not (_is_real(settings["eps"]) and 0 <= settings["eps"] < 1):
        raise bad("eps", "a number in [0, 1) (the final masking fraction of Dream's time grid)")
    thr = settings.get("threshold")
    if thr is not None and not (_is_real(thr) and 0 <= thr <= 1):
        raise bad("threshold", "None or a number in [0, 1] (a confidence; True/False and strings are not numbers)")
    return settings


def check_prompts(prompts: Any) -> None:
    """Prompts are a str, a list of str, an integer tensor [batch, length] (or [length]) or a list of integer
    lists; anything else is refused here, before a tokenizer or `int()` can reinterpret it."""
    forms = "a str, a list of str, an integer tensor [batch, length] or a list of integer id lists"
    if isinstance(prompts, str):
        return
    if isinstance(prompts, torch.Tensor):
        if prompts.dtype.is_floating_point or prompts.dtype.is_complex or prompts.dtype == torch.bool:
            raise TypeError(
                f"prompt tensor has dtype {prompts.dtype}; token ids must be an integer tensor "
                "(e.g. torch.long), never rounded from floats"
            )
        if prompts.dim() not in (1, 2) or prompts.shape[-1] == 0:
            raise ValueError(f"prompt tensor has shape {tuple(prompts.shape)}; pass [batch, length] with length >= 1")
        return
    if not isinstance(prompts, (list, tuple)):
        raise TypeError(f"prompts is a {type(prompts).__name__}; prompts are {forms}")
    if not prompts:
        raise ValueError(f"no prompts given (an empty {type(prompts).__name__}); prompts are {forms}")
    if all(_is_int(p) for p in prompts):
        raise TypeError(
            f"prompts={list(prompts)[:8]!r} is a flat list of ints; wrap it as one prompt of ids "
            f"([[...]], a list of id lists) or pass a [batch, length] tensor"
        )
    if all(isinstance(p, str) for p in prompts):
        return
    if any(isinstance(p, str) for p in prompts):
        i = next(i for i, p in enumerate(prompts) if not isinstance(p, str))
        raise TypeError(
            f"prompts mix str and other items (prompt {i} is a {type(prompts[i]).__name__}); prompts "
            f"are {forms}, not mixed"
        )
    for i, p in enumerate(prompts):
        if isinstance(p, torch.Tensor) and p.dim() == 1 and not p.dtype.is_floating_point and p.dtype != torch.bool:
            continue
        if isinstance(p, (list, tuple)) and all(_is_int(t) for t in p):
            continue
        shown = (
            type(p).__name__
            if not isinstance(p, (list, tuple))
            else f"a list holding {sorted({type(t).__name__ for t in p if not _is_int(t)})}"
        )
        raise TypeError(f"prompt {i} is {shown}; prompts are {forms}")


def _vocab_size(model) -> int | None:
    return vocab_size(model)


def check_prompt_ids(model, input_ids: torch.Tensor) -> None:
    """Ids within the embedding table (the hard limit), and no mask id."""
    check_ids_in_vocab(input_ids, _vocab_size(model), "prompt")
    if bool((input_ids == model.mask_id).any()):
        rows = sorted(set((input_ids == model.mask_id).nonzero()[:, 0].tolist()))
        raise ValueError(f"prompt(s) {rows} contain the mask token id {model.mask_id}; remove it from the prompt")


def _warn_positions(model, total: int) -> None:
    key = model.spec.position_key  # the config field of the trained length
    limit = model.config.get(key) if key else None
    if limit is None or total <= int(limit) or (id(model), total) in _warned_positions:
        return
    _warned_positions.add((id(model), total))
    warnings.warn(
        f"prompt plus response is {total} positions, beyond this model's trained {key}={limit}; "
        f"RoPE extrapolates (no hard limit in the {model.spec.name} family), so it runs, but outputs past "
        "the trained length are unreliable. Shorten the prompt or the response",
        stacklevel=4,
    )


# ---------------------------------------------------------------------------------------------- run time
def check_step_logits(model, logits: torch.Tensor, info) -> None:
    """Called by HookedMDM.forward once per sampler forward: one reduction and one bool read."""
    if bool(torch.isfinite(logits).all()):
        return
    n_bad = int((~torch.isfinite(logits)).sum())
    where = f"step {info.step} of {info.num_steps} ({info.sampler} sampler, block {info.block})"
    if model.hooks_attached or model._augmenters:
        why = (
            "hooks or a plan were attached (model.hooks / model.steer(plan) / cache_steps / generate(plan=)): one of "
            "them likely returned NaN or inf, e.g. a steering map whose result overflows the model's dtype; "
            "run without them to check"
        )
    else:
        why = "no hooks or plan were attached: the model itself produced them"
    if getattr(model, "folded", False):
        why += "; the weights hold a folded plan (model.active_fold): restore it to check"
    raise NonFiniteLogitsError(
        f"non-finite logits (NaN or inf) at denoising {where}: {n_bad} of {logits.numel()} values; {why}"
    )


@contextmanager
def own_rng(seed: int, device: torch.device) -> Iterator[None]:
    """A seeded run in its own RNG scope: the CPU generator and the input device's are seeded exactly as
    `torch.manual_seed(seed)` seeds them (so tokens equal the reference samplers'), and restored on exit."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[idx]), torch.cuda.device(idx):
            torch.default_generator.manual_seed(seed)
            torch.cuda.manual_seed(seed)
            yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def _replay_families() -> list[str]:
    from .families import FAMILIES

    return [name for name, spec in FAMILIES.items() if spec.replay_refusal is None and spec.generate is not None]


def replay_kwargs(model, replay, mode: str, input_ids: torch.Tensor, kwargs: dict) -> dict:
    """`{"replay": Replay}` for the sampler, or {} (mdm_lens.sampling.replay); checked before the first forward."""
    from .sampling.replay import Schedule, check_mode

    check_mode(mode)
    if replay is None:
        return {}
    if model.spec.replay_refusal is not None:  # each family's own reason (FamilySpec.replay_refusal)
        raise ValueError(
            f"replay= is refused for the {model.spec.name} family: {model.spec.replay_refusal}. Run replay= on a "
            f"family whose sampler takes a schedule ({', '.join(_replay_families())}), or compare runs with the same seed"
        )
    schedule = Schedule.from_output(replay)
    steps = kwargs.get("steps")
    if steps is not None and kwargs.get("threshold") is None and schedule.num_steps > int(steps):
        raise ValueError(
            f"replay: the schedule decodes up to step {schedule.num_steps - 1}, this run has steps={steps}; "
            "use the replayed run's steps"
        )
    gen = int(kwargs.get(model.spec.length_key) or 0)
    return {
        "replay": schedule.bind(
            input_ids.shape[1], input_ids.shape[0], input_ids.shape[1] + gen, input_ids.device, mode
        )
    }


def run_generation(
    model,
    prompts,
    *,
    plan=None,
    chat: bool = True,
    seed: int | None = None,
    progress: bool = False,
    sampler: str = "reference",
    **overrides,
) -> GenerationOutput:
    if model.spec.generate is None:
        raise NotImplementedError(
            f"HookedMDM.generate runs the sampler a family declares (FamilySpec.generate); the {model.spec.name} "
            "family declares none: call model.model.generate(...) for it"
        )
    check_seed(seed)
    check_prompts(prompts)
    return_history = bool(overrides.pop("return_history", False))
    replay, replay_mode = overrides.pop("replay", None), overrides.pop("replay_mode", "order")
    kwargs = model.sampler_settings(sampler, **overrides)
    ids = special_ids(model)
    input_ids, attn = encode_prompts(prompts, model.tokenizer, chat=chat, pad_id=ids["pad"])
    check_prompt_ids(model, input_ids)
    _warn_positions(model, input_ids.shape[1] + int(kwargs.get(model.spec.length_key) or 0))
    device = model.input_device
    input_ids = input_ids.to(device)
    attn = attn.to(device) if attn is not None else None
    bar = on_step = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="denoising", unit="step", leave=False)

        def on_step(info):  # the sampler itself sets model.step_info (sampling.common.announcing)
            bar.total = info.num_steps
            bar.update(1)

    from .sampling.trace import DecodeTrace

    trace = DecodeTrace(model.mask_id, keep_history=return_history)
    replay_kw = replay_kwargs(model, replay, replay_mode, input_ids, kwargs)
    stack = ExitStack()
    try:
        stack.enter_context(model.exclusive("a generation", "generating"))
        stack.enter_context(own_rng(seed, device) if seed is not None else nullcontext())
        stack.enter_context(model.steer(plan) if plan is not None else nullcontext())
        stack.enter_context(torch.no_grad())
        if sampler == "fast":  # Fast-dLLM's KV-cached sampler (mdm_lens.fast_path)
            from .fast_path import fast_call

            fn, fast_kwargs = fast_call(model, input_ids, attn, kwargs)
            seqs = fn(model, input_ids, on_step=on_step, trace=trace, **fast_kwargs, **replay_kw)
        else:  # the family's own sampler (FamilySpec.generate)
            seqs = model.spec.generate(
                model,
                input_ids,
                attn,
                {**kwargs, **replay_kw},
                on_step=on_step,
                trace=trace,
                special=ids,
                return_history=return_history,
            )
    except NonFiniteLogitsError as e:
        if plan is None:
            raise
        raise NonFiniteLogitsError(f"{e}; generate(plan=...) attached {plan!r}") from None
    finally:
        stack.close()
        if bar is not None:
            bar.close()
    plen = input_ids.shape[1]
    tokens = seqs[:, plen:]
    texts = decode_responses(tokens, model.tokenizer, [ids["eos"], ids["eot"]])
    history = trace.history_tensor()
    return GenerationOutput(
        texts=texts,
        tokens=tokens.cpu(),
        sequences=seqs.cpu(),
        prompt_length=plen,
        attention_mask=attn.cpu() if attn is not None else None,
        decode_step=None if trace.decode_step is None else trace.decode_step[:, plen:].cpu(),
        history=None if history is None else history[:, :, plen:].cpu(),
    )
