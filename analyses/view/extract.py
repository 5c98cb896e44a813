"""What the viewer shows, taken from one generation: the decode trace, per-step top-k predictions at every response
position, a per-layer logit lens and attention rows at chosen steps, and (optionally) SAE-style features.

Everything here is measured on the generation itself, never re-sampled:
* the top-k come from a hook on `hook_logits` during the sampler's own forwards (the conditional rows under CFG;
  the raw model logits, before `logits_eos_inf` and Gumbel noise), so step s's predictions are exactly what step s
  decided from;
* the lens and attention replay the canvas that step s read (`history[s-1]`, the all-mask canvas for s = 0)
  through `run_with_cache`, as `analyses.logit_lens` does (TL's `accumulated_resid(apply_ln=True)` then `W_U`);
  the forward is deterministic, so these are the sampler's activations.
Only top-k (ids + probabilities) are kept, never full logits: a 256 x 256 trace stays a few MB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from mdm_lens.step_replay import check_full_forward_replay


@dataclass
class FeatureSpec:
    """Strongest features per position and step, from any encoder: `encode(act [pos, d]) -> [pos, n_features]`
    (an SAE's `encode`, a probe matrix, ...) applied to `site` at every denoising step. `labels`: optional
    feature id -> short description shown beside the id."""

    site: str
    encode: Callable[[torch.Tensor], torch.Tensor]
    k: int = 5
    labels: dict[int, str] | None = None
    name: str = "features"

    def __post_init__(self) -> None:
        if not (isinstance(self.k, int) and 1 <= self.k <= 64):
            raise ValueError(f"FeatureSpec k={self.k!r}: the number of features kept per position, an int in 1..64")
        if not callable(self.encode):
            raise TypeError(
                f"FeatureSpec encode must be callable ([pos, d] -> [pos, n_features]), got {type(self.encode).__name__}"
            )


@dataclass
class Trace:
    """One generation, as the viewer stores it. Tensors are CPU; `*_ids` are vocabulary ids."""

    label: str
    prompt: str
    prompt_ids: list[int]
    tokens: list[int]  # final response ids (fill after the stop token included)
    text: str
    decode_step: list[int]  # step that unmasked each position, -1 never
    topk_ids: Int[torch.Tensor, "steps gen k"]
    topk_probs: Float[torch.Tensor, "steps gen k"]
    stop_ids: list[int]
    lens: dict[str, Any] | None = None  # steps, layers, ids [S, L, gen, k], probs
    attention: dict[str, Any] | None = None  # steps, layers, n_heads, keys [S, L, H, gen, k], weights
    features: dict[str, Any] | None = None  # name, site, ids [steps, gen, k], acts, labels
    damage: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return int(self.topk_ids.shape[0])


def _check(model, k: int, settings: dict[str, Any]) -> int:
    """Refuse runs the viewer cannot replay faithfully (mdm_lens.step_replay); return the logit shift."""
    if not (isinstance(k, int) and 1 <= k <= 32):
        raise ValueError(f"top_k={k!r}: must be an integer in 1..32 (the viewer stores top-k per position and step)")
    what = "the trace viewer (decode trace of mask tokens unmasked step by step, lens replayed per step)"
    return check_full_forward_replay(model, settings, what)


def _response_slice(shift: int, plen: int, gen: int) -> slice:
    """Where the logits predicting response tokens sit: with a shift (Dream, dllm's `right_shift_logits`) the
    state at j-1 predicts token j."""
    return slice(plen - shift, plen - shift + gen)


def _record_hooks(model, k: int, features: FeatureSpec | None, store: dict, shift: int) -> dict:
    """Hooks that keep, per step, the top-k of the response predictions (and features) of the generation's row."""

    def on_logits(act, ctx):
        sl = _response_slice(shift, ctx.prompt_length, ctx.info.gen_length)
        p = act[:1, sl].float().softmax(-1)
        v, i = p.topk(k, dim=-1)
        store["topk"][ctx.step] = (i[0].to("cpu", torch.int32), v[0].to("cpu", torch.float16))

    hooks = {"hook_logits": on_logits}
    if features is not None:

        def on_site(act, ctx):
            plen, gen = ctx.prompt_length, ctx.info.gen_length
            f = features.encode(act[0, plen : plen + gen])
            if f.dim() != 2 or f.shape[0] != gen:
                raise ValueError(
                    f"FeatureSpec.encode returned shape {tuple(f.shape)} for {gen} positions; it must "
                    f"return [positions, n_features]"
                )
            if not bool(torch.isfinite(f).all()):
                raise FloatingPointError(
                    f"FeatureSpec.encode on {features.site} returned NaN or inf at step "
                    f"{ctx.step}; check the encoder (and its dtype) on this site's activations"
                )
            v, i = f.float().topk(min(features.k, f.shape[1]), dim=-1)
            store["features"][ctx.step] = (i.to("cpu", torch.int32), v.to("cpu", torch.float16))

        hooks = {**hooks, features.site: on_site}
    return hooks


def _pieces(tok, tokens: Sequence[int], cut: int) -> list[str]:
    """Each response token's share of the decoded text (prefix differences, so that the pieces up to the stop token
    join to exactly `decode(tokens[:cut])`, spaces and multi-byte characters included)."""
    if tok is None:
        return [(" " if i else "") + str(t) for i, t in enumerate(tokens[:cut])]
    out, prev = [], ""
    for i in range(cut):
        cur = tok.decode(list(tokens[: i + 1]), skip_special_tokens=True)
        out.append(cur[len(prev) :] if cur.startswith(prev) else tok.decode([tokens[i]], skip_special_tokens=True))
        prev = cur if cur.startswith(prev) else prev + out[-1]
    return out


@torch.no_grad()
def _replay(
    model,
    prompt_ids: torch.Tensor,
    history: torch.Tensor,
    steps: Sequence[int],
    lens_layers: list[int],
    attn_layers: list[int],
    k: int,
    attn_k: int,
    shift: int,
) -> tuple[dict | None, dict | None]:
    """Per chosen step: each lens layer's top-k at every response position (TL's logit lens), and each attention
    layer's top-`attn_k` keys for every response query, per head."""
    plen, gen = prompt_ids.shape[1], history.shape[-1]
    n = model.n_layers
    names = []
    if lens_layers:
        names += [f"blocks.{l}.hook_resid_pre" for l in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]
    names += [f"blocks.{l}.attn.hook_pattern" for l in attn_layers]
    W_U = model.W_U.detach().float()
    lens_i, lens_p, att_i, att_w = [], [], [], []
    for s in steps:
        canvas = torch.full((1, gen), model.mask_id, dtype=torch.long) if s == 0 else history[s - 1]
        ids = torch.cat([prompt_ids, canvas], 1).to(model.input_device)
        _, cache = model.run_with_cache(ids, names_filter=names, prompt_length=plen)
        if lens_layers:
            stack = cache.accumulated_resid(apply_ln=True, pos_slice=_response_slice(shift, plen, gen))
            per = [(stack[l + 1, 0].float() @ W_U).softmax(-1).topk(k, dim=-1) for l in lens_layers]
            lens_i.append(torch.stack([p.indices for p in per]).cpu())
            lens_p.append(torch.stack([p.values for p in per]).cpu())
        if attn_layers:
            per = [
                cache[f"blocks.{l}.attn.hook_pattern"][0, :, plen : plen + gen]
                .float()
                .topk(min(attn_k, plen + gen), dim=-1)
                for l in attn_layers
            ]
            att_i.append(torch.stack([p.indices for p in per]).cpu())
            att_w.append(torch.stack([p.values for p in per]).cpu())
    lens = (
        None
        if not lens_layers
        else {"steps": list(steps), "layers": lens_layers, "ids": torch.stack(lens_i), "probs": torch.stack(lens_p)}
    )
    attention = (
        None
        if not attn_layers
        else {
            "steps": list(steps),
            "layers": attn_layers,
            "n_heads": int(att_i[0].shape[1]),
            "keys": torch.stack(att_i),
            "weights": torch.stack(att_w),
        }
    )
    return lens, attention


def default_detail_steps(n_steps: int, most: int = 6) -> list[int]:
    """Evenly spaced steps (first and last included) where the lens and attention are read."""
    if n_steps <= most:
        return list(range(n_steps))
    return sorted({round(i * (n_steps - 1) / (most - 1)) for i in range(most)})


def _choose(kind: str, chosen: Sequence[int] | None, n: int, default: list[int]) -> list[int]:
    if chosen is None:
        return default
    chosen = sorted(dict.fromkeys(int(c) for c in chosen))
    bad = [c for c in chosen if not 0 <= c < n]
    if bad:
        raise ValueError(
            f"{kind} {bad} out of range: this run has {kind} 0..{n - 1}; pick some of them, [] for "
            f"none, or None for the default"
        )
    return chosen


def trace_generation(
    model,
    prompt: str,
    *,
    plan=None,
    label: str = "unsteered",
    top_k: int = 5,
    seed: int = 0,
    chat: bool = True,
    detail_steps: Sequence[int] | None = None,
    lens_layers: Sequence[int] | None = None,
    attn_layers: Sequence[int] | None = None,
    attn_k: int = 8,
    features: FeatureSpec | None = None,
    **sampler_kwargs,
) -> Trace:
    """Generate `prompt` once (with `plan` attached if given) and keep what the viewer shows. `detail_steps`: where
    the lens and attention are read (default: 6 evenly spaced steps); `lens_layers` / `attn_layers`: None for all
    layers (attention: all layers only while layers x heads <= 256, else the last layer), [] for none."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt is a {type(prompt).__name__}; the viewer takes one str per generation")
    sampler_kwargs.pop("return_history", None)
    shift = _check(model, top_k, model.sampler_settings(**sampler_kwargs))
    store: dict = {"topk": {}, "features": {}}
    with model.hooks(_record_hooks(model, top_k, features, store, shift)):
        out = model.generate([prompt], plan=plan, seed=seed, chat=chat, return_history=True, **sampler_kwargs)
    n_steps = out.history.shape[0]
    if sorted(store["topk"]) != list(range(n_steps)):
        raise RuntimeError(f"the logits hook saw steps {sorted(store['topk'])[:8]}... for a {n_steps}-step run")
    from mdm_lens.generation import special_ids

    ids = special_ids(model)
    stops = [t for t in (ids["eos"], ids["eot"]) if t is not None]
    plen = out.prompt_length
    prompt_ids = out.sequences[:, :plen]
    if out.attention_mask is not None:  # one prompt: no padding, but be exact
        prompt_ids = prompt_ids[:, out.attention_mask[0].bool()]
    steps = _choose("steps", detail_steps, n_steps, default_detail_steps(n_steps))
    n_heads = int(model.cfg.n_heads)
    all_attn = list(range(model.n_layers)) if model.n_layers * n_heads <= 256 else [model.n_layers - 1]
    lens_l = _choose("layers", lens_layers, model.n_layers, list(range(model.n_layers)))
    attn_l = _choose("layers", attn_layers, model.n_layers, all_attn)
    lens = attention = None
    if steps:  # the steered run's lens and attention are read with its plan attached
        with model.steer(plan) if plan is not None else nullcontext():
            lens, attention = _replay(
                model, prompt_ids, out.history[:, :1], steps, lens_l, attn_l, top_k, attn_k, shift
            )
    feats = None
    if features is not None:
        f_i = torch.stack([store["features"][s][0] for s in range(n_steps)])
        f_a = torch.stack([store["features"][s][1] for s in range(n_steps)])
        feats = {
            "name": features.name,
            "site": features.site,
            "ids": f_i,
            "acts": f_a,
            "labels": {int(k): str(v) for k, v in (features.labels or {}).items()},
        }
    settings = {
        k: v
        for k, v in model.sampler_settings(**sampler_kwargs).items()
        if k in ("steps", "gen_length", "max_new_tokens", "block_length", "temperature", "remasking", "alg")
    }
    return Trace(
        label=label,
        prompt=prompt,
        prompt_ids=prompt_ids[0].tolist(),
        tokens=out.tokens[0].tolist(),
        text=out.texts[0],
        decode_step=out.decode_step[0].tolist(),
        topk_ids=torch.stack([store["topk"][s][0] for s in range(n_steps)]),
        topk_probs=torch.stack([store["topk"][s][1] for s in range(n_steps)]),
        stop_ids=stops,
        lens=lens,
        attention=attention,
        features=feats,
        settings={**settings, "seed": seed},
    )


def response_cut(trace: Trace) -> int:
    """Index of the first stop token in the response (its length when there is none)."""
    return next((i for i, t in enumerate(trace.tokens) if t in set(trace.stop_ids)), len(trace.tokens))


def token_pieces(model, trace: Trace) -> list[str]:
    return _pieces(model.tokenizer, trace.tokens, response_cut(trace))
