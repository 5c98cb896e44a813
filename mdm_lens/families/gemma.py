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
"""
from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import nn

from ..sites import get_act_name
from .base import FamilySpec, Site

try:
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion
except ImportError as e:  # pragma: no cover - transformers without the model
    raise ModuleNotFoundError(f"transformers has no DiffusionGemma: {e}", name=__name__) from e


class DiffusionGemmaMDM(DiffusionGemmaForBlockDiffusion):
    """The transformers model unchanged (same parameters and hub keys) with a [B, P] -> [B, P, V] forward."""

    no_split_modules = ["DiffusionGemmaEncoderTextLayer", "DiffusionGemmaDecoderTextLayer"]

    def forward(self, input_ids: Int[torch.Tensor, "b p"], attention_mask: Int[torch.Tensor, "b p"] | None = None,
                position_ids: torch.Tensor | None = None, canvas_length: int | None = None,
                self_conditioning_logits: torch.Tensor | None = None, **kwargs) -> Float[torch.Tensor, "b p v"]:
        if "decoder_input_ids" in kwargs:        # called the transformers way (e.g. by generate)
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                   self_conditioning_logits=self_conditioning_logits, **kwargs)
        b, p = input_ids.shape
        c = canvas_length or self.config.canvas_length
        if not 0 < c < p:
            raise ValueError(f"need a non-empty prompt before the canvas: {p} positions, canvas_length={c}")
        out = super().forward(
            input_ids=input_ids[:, : p - c], decoder_input_ids=input_ids[:, p - c:],
            attention_mask=None if attention_mask is None else attention_mask[:, : p - c],
            position_ids=None if position_ids is None else position_ids[:, : p - c],
            decoder_position_ids=None if position_ids is None else position_ids[:, p - c:],
            decoder_attention_mask=attention_mask, self_conditioning_logits=self_conditioning_logits)
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


def build_sites(model: nn.Module) -> list[Site]:
    tc = model.config.text_config
    d, d_mlp = tc.hidden_size, tc.intermediate_size
    sites = [Site(get_act_name("embed"), "model.decoder.embed_tokens", "output", None, d, None, "embed")]
    for layer in range(tc.num_hidden_layers):
        blk = f"model.decoder.layers.{layer}"
        rows = [("resid_pre", blk, "input", d, None),
                ("attn_out", f"{blk}.self_attn.o_proj", "output", d, f"{blk}.self_attn.o_proj"),
                ("resid_mid", f"{blk}.pre_feedforward_layernorm", "input", d, None),
                ("mlp_pre", f"{blk}.mlp.gate_proj", "output", d_mlp, f"{blk}.mlp.gate_proj"),
                ("mlp_pre_linear", f"{blk}.mlp.up_proj", "output", d_mlp, f"{blk}.mlp.up_proj"),
                ("mlp_post", f"{blk}.mlp.down_proj", "input", d_mlp, None),
                ("mlp_out", f"{blk}.mlp.down_proj", "output", d, f"{blk}.mlp.down_proj"),
                ("resid_post", blk, "output", d, None)]
        sites += [Site(get_act_name(role, layer), path, kind, layer, w, lin, role) for role, path, kind, w, lin in rows]
    sites.append(Site(get_act_name("ln_final"), "model.decoder.norm", "output", None, d, None, "ln_final"))
    # lm_head output *before* the tanh soft-cap; lm_head is tied to the embeddings, so no folding target
    sites.append(Site(get_act_name("logits"), "lm_head", "output", None, tc.vocab_size, None, "logits"))
    return sites


# transformers' DiffusionGemmaGenerationConfig._get_default_generation_params (models/diffusion_gemma/
# generation_diffusion_gemma.py): the defaults `generate` uses when the checkpoint sets none.
RECOMMENDED = {"max_new_tokens": 256, "max_denoising_steps": 48, "entropy_bound": 0.1, "t_min": 0.4, "t_max": 0.8,
               "stability_threshold": 1, "confidence_threshold": 0.005}

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
)
