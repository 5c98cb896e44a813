"""DiffusionGemma through transformers' own native classes (`transformers.DiffusionGemmaForBlockDiffusion`).

What transformers 5.x ships (models/diffusion_gemma): a *block* diffusion model with **no mask token**.
A causal encoder (Gemma-4 text layers + MoE, optional vision tower) reads the prompt into a KV cache; a
decoder with the same (tied) weights denoises a fixed-length canvas (`canvas_length`, 256 on the hub)
bidirectionally over [prompt cache | canvas], with self-conditioning on the previous step's logits.
The canvas starts as uniform-random tokens and the reference sampler (`generate`) accepts tokens under
an entropy bound and re-noises the rest; logits are soft-capped (tanh, `final_logit_softcapping`).

Our contract here: `forward(input_ids [B, P], attention_mask=None) -> logits [B, P, V]` treats the last
`canvas_length` positions as the canvas (settable per call) and the rest as the prompt; the prompt rows of
the returned logits are zero (the decoder predicts canvas positions only). Sites are on the *decoder*, so
their tensors cover the canvas positions only. There is no mask id (`default_mask_id=-1`), the sampler is
transformers' own (`sampler="diffusion_gemma"`, not llada/dream), and the post-norms between o_proj /
down_proj and the residual add make directional-ablation folding inexact (`residual_writers=None`).

`HookedMDM.generate` drives transformers' `generate` itself (`generate_hooked`): hooks get the step clock and
a `CanvasContext`, whose "still to decide" positions are those holding fresh uniform noise.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Callable

import torch
from jaxtyping import Float, Int
from torch import nn

from ..context import StepContext
from ..sampling.common import StepInfo
from ._layers import site_table
from .base import FamilySpec, Site

try:
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion
except ImportError as e:  # pragma: no cover - transformers without the model
    raise ModuleNotFoundError(f"transformers has no DiffusionGemma: {e}", name=__name__) from e


class DiffusionGemmaMDM(DiffusionGemmaForBlockDiffusion):
    """The transformers model unchanged (same parameters and hub keys) with a [B, P] -> [B, P, V] forward."""

    no_split_modules = ["DiffusionGemmaEncoderTextLayer", "DiffusionGemmaDecoderTextLayer"]

    def forward(
        self,
        input_ids: Int[torch.Tensor, "b p"] | None = None,
        attention_mask: Int[torch.Tensor, "b p"] | None = None,
        position_ids: torch.Tensor | None = None,
        canvas_length: int | None = None,
        self_conditioning_logits: torch.Tensor | None = None,
        **kwargs,
    ) -> Float[torch.Tensor, "b p v"]:
        if "decoder_input_ids" in kwargs:  # called the transformers way (e.g. by generate)
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                self_conditioning_logits=self_conditioning_logits,
                **kwargs,
            )
        b, p = input_ids.shape
        c = canvas_length or self.config.canvas_length
        if not 0 < c < p:
            raise ValueError(f"need a non-empty prompt before the canvas: {p} positions, canvas_length={c}")
        out = super().forward(
            input_ids=input_ids[:, : p - c],
            decoder_input_ids=input_ids[:, p - c :],
            attention_mask=None if attention_mask is None else attention_mask[:, : p - c],
            position_ids=None if position_ids is None else position_ids[:, : p - c],
            decoder_position_ids=None if position_ids is None else position_ids[:, p - c :],
            decoder_attention_mask=attention_mask,
            self_conditioning_logits=self_conditioning_logits,
        )
        canvas = out.logits
        return torch.cat([canvas.new_zeros(b, p - c, canvas.shape[-1]), canvas], dim=1)


def _text(config: dict) -> dict:
    return config.get("text_config") or {}


def build_model(config: dict) -> DiffusionGemmaMDM:
    cfg = DiffusionGemmaConfig.from_dict({k: v for k, v in config.items() if k != "transformers_version"})
    return DiffusionGemmaMDM(cfg)


def from_pretrained(folder: str, dtype: torch.dtype | None, device: Any, device_map: Any) -> DiffusionGemmaMDM:
    """transformers' loader: it knows the checkpoint's tied encoder/decoder weights and key conversions."""
    kwargs: dict[str, Any] = {"dtype": dtype or "auto"}
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = DiffusionGemmaMDM.from_pretrained(folder, **kwargs)
    return model.to(device) if device is not None and device_map is None else model


def _global(tc, name: str):
    """A text-config field, or None where transformers calls it per-layer (heterogeneous Gemma-4 layers)."""
    try:
        return getattr(tc, name, None)
    except Exception:  # noqa: BLE001 - AmbiguousGlobalPerLayerAttributeError and kin
        return None


def dims(model: nn.Module) -> dict[str, Any]:
    """Sizes of the text decoder in TransformerLens' words (None where the layers differ)."""
    tc = model.config.text_config
    return {
        "n_layers": tc.num_hidden_layers,
        "d_model": tc.hidden_size,
        "n_heads": _global(tc, "num_attention_heads"),
        "d_head": _global(tc, "head_dim"),
        "n_kv_heads": _global(tc, "num_key_value_heads"),
        "d_mlp": _global(tc, "intermediate_size"),
        "d_vocab": tc.vocab_size,
        "n_ctx": _global(tc, "max_position_embeddings"),
        "eps": _global(tc, "rms_norm_eps"),
        "embed_weight": "model.decoder.embed_tokens.weight",
        "unembed_weight": "lm_head.weight",
    }


def build_sites(model: nn.Module) -> list[Site]:
    """Uniform-noise canvas sites (docs/diffusion_gemma.md): on the decoder, so `[batch, canvas, ...]` only; the
    canvas holds random tokens and accepted ones, never a mask token. The `masked` scope and `t` exist only inside
    `generate` (fresh-noise positions, `CanvasContext`); elsewhere they raise `NoMaskTokenError`."""
    b = "model.decoder.layers.{l}"
    paths = {
        "embed": "model.decoder.embed_tokens",
        "resid_pre": (b, "input"),
        "attn_out": f"{b}.self_attn.o_proj",
        "resid_mid": (f"{b}.pre_feedforward_layernorm", "input"),
        "mlp_pre": f"{b}.mlp.gate_proj",
        "mlp_pre_linear": f"{b}.mlp.up_proj",
        "mlp_post": (f"{b}.mlp.down_proj", "input"),
        "mlp_out": f"{b}.mlp.down_proj",
        "resid_post": b,
        "ln_final": "model.decoder.norm",
        # lm_head output *before* the tanh soft-cap; lm_head is tied to the embeddings: no folding target
        "logits": "lm_head",
    }
    linears = {r: paths[r] for r in ("attn_out", "mlp_pre", "mlp_pre_linear", "mlp_out")}
    return site_table(dims(model), paths, linears)


# ---------------------------------------------------------------------------------------------- generation
class CanvasContext(StepContext):
    """The step context of one DiffusionGemma decoder forward.

    Positions are the canvas's (sites sit on the decoder, whose tensors cover the canvas only): `input_ids` is the
    canvas, every position is a response position (`prompt_length` 0 here; `info.prompt_length` is the prompt's).
    There is no mask token: the canvas starts as uniform-random tokens and after each step the entropy-bound
    sampler keeps the tokens it accepted and re-noises the rest. So "still to decide" (`masked`, the "masked"
    scope, `t`) means: positions holding fresh uniform noise in this forward's input, i.e. every position at a
    canvas's first step, then the ones the previous step did not accept. Accepted positions are still re-sampled
    by later steps (nothing is final before the canvas ends: the output is the last step's argmax), and a row the
    adaptive stopping criterion has finished keeps its canvas while the batch runs on."""

    def __init__(self, canvas: Int[torch.Tensor, "b c"], noise: torch.Tensor, info: StepInfo):
        super().__init__(canvas, None, -1, prompt_length=0, logits_shift=False, info=info)
        self._noise = noise

    @cached_property
    def masked(self) -> torch.Tensor:
        return self._noise


GENERATE_OPTIONS = (
    "max_new_tokens",
    "max_denoising_steps",
    "entropy_bound",
    "t_min",
    "t_max",
    "stability_threshold",
    "confidence_threshold",
)


@torch.no_grad()
def generate_hooked(
    hooked,
    input_ids: Int[torch.Tensor, "b p"],
    attention_mask: torch.Tensor | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    check_logits: Callable[[Any, torch.Tensor, StepInfo], None] | None = None,
    **settings,
) -> Int[torch.Tensor, "b total"]:
    """transformers' own `DiffusionGemmaForBlockDiffusion.generate`, with the step clock and hooks.

    `generate` reads `self.forward` once and calls it for every decoder (denoising) forward with
    `decoder_input_ids=<canvas>`; the first forward of each canvas has no self-conditioning logits. We put a
    wrapper in the instance's `forward` slot for the duration of the call: it announces a `StepInfo` (step =
    canvas index × max_denoising_steps + step within the canvas, so a canvas the adaptive criterion stops early
    leaves gaps; block = canvas index; num_steps / num_blocks are the upper bounds) on `hooked.step_clock`, sets the
    `CanvasContext` hooks receive, runs the real forward, and hands the logits to `check_logits` (generation
    passes its once-per-step finiteness check). The sampler object is
    captured the same way (`_prepare_sampler`) to read which positions the previous step accepted. Nothing else
    of the loop changes: with no-op hooks the tokens equal `generate`'s for the same seed. The encoder (prompt ->
    KV cache) runs outside the wrapper: sites are on the decoder. Returns prompt + generated ids (pad after EOS)."""
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import EntropyBoundSamplerConfig

    from ..sampling.common import announcing

    inner = hooked.model
    bad = sorted(set(settings) - set(GENERATE_OPTIONS))
    if bad:
        raise TypeError(f"unknown DiffusionGemma generate option(s) {bad}; valid options: {list(GENERATE_OPTIONS)}")
    kwargs = dict(settings)
    if "entropy_bound" in kwargs:
        kwargs["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=kwargs.pop("entropy_bound"))
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    canvas_len = int(inner.config.canvas_length)
    per_canvas = int(kwargs.get("max_denoising_steps") or RECOMMENDED["max_denoising_steps"])
    max_new = int(kwargs.get("max_new_tokens") or RECOMMENDED["max_new_tokens"])
    n_canvases = math.ceil(max_new / canvas_len)
    plen = input_ids.shape[1]
    state: dict[str, Any] = {"block": -1, "i": 0, "sampler": None}
    real_forward, real_prepare = inner.forward, inner._prepare_sampler
    had = {k: k in inner.__dict__ for k in ("forward", "_prepare_sampler")}

    def prepare_sampler(generation_config):
        state["sampler"] = real_prepare(generation_config)
        return state["sampler"]

    with announcing(hooked, on_step) as announce:

        def forward(*args, **kw):
            if "decoder_input_ids" not in kw:
                return real_forward(*args, **kw)
            canvas = kw["decoder_input_ids"]
            if kw.get("self_conditioning_logits") is None:  # a new canvas
                state["block"], state["i"] = state["block"] + 1, 0
                noise = torch.ones_like(canvas, dtype=torch.bool)
            else:
                noise = ~state["sampler"].accepted_token_mask
            info = StepInfo(
                state["block"] * per_canvas + state["i"],
                per_canvas * n_canvases,
                state["block"],
                n_canvases,
                plen,
                max_new,
                "diffusion_gemma",
            )
            state["i"] += 1
            announce(info)
            prev = hooked._ctx
            hooked._ctx = CanvasContext(canvas, noise, info)
            try:
                out = real_forward(*args, **kw)
            finally:
                hooked._ctx = prev
            if check_logits is not None:
                check_logits(hooked, out.logits, info)
            return out

        inner.forward, inner._prepare_sampler = forward, prepare_sampler
        try:
            out = inner.generate(input_ids, **kwargs)
        finally:
            for k, real in (("forward", real_forward), ("_prepare_sampler", real_prepare)):
                if had[k]:
                    setattr(inner, k, real)
                else:
                    delattr(inner, k)
    return getattr(out, "sequences", out)


# transformers' DiffusionGemmaGenerationConfig._get_default_generation_params (models/diffusion_gemma/
# generation_diffusion_gemma.py): the defaults `generate` uses when the checkpoint sets none.
RECOMMENDED = {
    "max_new_tokens": 256,
    "max_denoising_steps": 48,
    "entropy_bound": 0.1,
    "t_min": 0.4,
    "t_max": 0.8,
    "stability_threshold": 1,
    "confidence_threshold": 0.005,
}


def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    settings: dict[str, Any],
    *,
    on_step,
    trace,
    special: dict[str, int | None],
    return_history: bool = False,
) -> torch.Tensor:
    """transformers' own loop, hooked (`generate_hooked`); it has no unmasking history to return."""
    from ..generation import check_step_logits

    if return_history:
        raise ValueError(
            "return_history: DiffusionGemma's canvas starts as uniform noise and has no mask "
            "token, so there is no unmasking history or decode trace; hook the sites instead "
            "(ctx.masked = positions still holding noise)"
        )
    return generate_hooked(
        model, input_ids, attention_mask, on_step=on_step, check_logits=check_step_logits, **settings
    )


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """transformers' DiffusionGemmaConfig: 2 text layers, MoE with 4 experts, a 1-layer vision tower."""
    text = {
        "vocab_size": 320,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "global_head_dim": 32,
        "num_global_key_value_heads": 1,
        "sliding_window": 16,
        "num_experts": 4,
        "top_k_experts": 2,
        "moe_intermediate_size": 32,
        "layer_types": ["sliding_attention", "full_attention"],
        "max_position_embeddings": 512,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    text.update(overrides.pop("text_config", {}))
    vision = {
        "model_type": "gemma4_vision",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "position_embedding_size": 64,
    }
    cfg = DiffusionGemmaConfig(text_config=text, vision_config=vision, canvas_length=8).to_dict()
    cfg["architectures"] = ["DiffusionGemmaForBlockDiffusion"]
    cfg.pop("transformers_version", None)
    return {**cfg, **overrides}


SPEC = FamilySpec(
    name="diffusion_gemma",
    model_types=("diffusion_gemma",),
    architectures=("DiffusionGemmaForBlockDiffusion",),
    default_mask_id=-1,
    sampler="diffusion_gemma",
    recommended=RECOMMENDED,
    logits_shift=False,
    build_sites=build_sites,
    residual_writers=None,
    dims=dims,
    length_key="max_new_tokens",
    generate=generate,
    replay_refusal="its canvas starts as uniform noise (no mask token), with no unmasking order to replay",
    build_model=build_model,
    from_pretrained=from_pretrained,
    size_fields=(
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "intermediate_size",
        "max_position_embeddings",
        "head_dim",
    ),
    size_section="text_config",
    heads_split_width=False,
    tiny_config=tiny_config,
)
