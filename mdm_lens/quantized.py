"""Row-wise int8 checkpoints: how a ~100M-parameter organism fits the package's 100 MB weight budget.

Why row-wise (one float32 scale per output row, symmetric, no zero point): each output feature of a linear
layer keeps its own range, so a row of small weights is not flattened by a large neighbour, and the error is a
rounding of at most half a step (|w - w_hat| <= scale / 2, scale = max|row| / 127) that `quantization_error`
reports per tensor. Only 2-D floating weights are quantized; norms and everything else stay float32. The
checkpoint is a plain safetensors file: `K` (int8) and `K_scale` (float32, one per row), and config.json names
the scheme (`mdm_lens_quantization`), so a loader that does not know it refuses instead of loading int8 codes as
weights. Loading dequantizes once (`w = code * scale`) into the model's float dtype: every forward is the
float model that was evaluated, and steering / hooks see ordinary float weights.
"""

from __future__ import annotations

from typing import Any

import torch

SCHEME = "int8-rowwise"
SCALE_SUFFIX = "_scale"
CONFIG_KEY = "mdm_lens_quantization"


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """int8 codes + float32 row scales for every 2-D floating tensor; other tensors as float32."""
    out: dict[str, torch.Tensor] = {}
    for key, w in state.items():
        if key.endswith(SCALE_SUFFIX):
            raise ValueError(f"tensor name {key!r} ends with {SCALE_SUFFIX!r}, the suffix int8 scales use")
        w = w.detach().to("cpu", torch.float32)
        if w.ndim != 2 or not w.is_floating_point():
            out[key] = w.contiguous()
            continue
        if not torch.isfinite(w).all():
            raise ValueError(f"tensor {key!r} has NaN or infinite values; refusing to quantize a broken model")
        scale = (w.abs().amax(dim=1) / 127.0).clamp_min(torch.finfo(torch.float32).tiny)
        out[key] = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        out[key + SCALE_SUFFIX] = scale.contiguous()
    return out


def dequantize_state(
    state: dict[str, torch.Tensor], config: dict[str, Any], where: str, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The float state dict of a checkpoint; unchanged when config.json names no quantization scheme."""
    scheme = config.get(CONFIG_KEY)
    if scheme is None:
        return state
    if scheme != SCHEME:
        raise ValueError(
            f"{where}: {CONFIG_KEY}={scheme!r} is not a scheme this version reads (only {SCHEME!r}); "
            "upgrade mdm-lens or re-save the checkpoint with float weights"
        )
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(key + SCALE_SUFFIX)
        if t.dtype == torch.int8:
            if scale is None or scale.shape != (t.shape[0],):
                got = None if scale is None else tuple(scale.shape)
                raise ValueError(
                    f"{where}: int8 tensor {key!r} {tuple(t.shape)} needs a float32 {key + SCALE_SUFFIX!r} of "
                    f"shape ({t.shape[0]},), found {got}; the checkpoint is damaged: re-export it"
                )
            out[key] = (t.to(torch.float32) * scale[:, None]).to(dtype)
        else:
            out[key] = t
    orphans = [k for k in state if k.endswith(SCALE_SUFFIX) and k[: -len(SCALE_SUFFIX)] not in state]
    if orphans:
        raise ValueError(f"{where}: scales without their int8 tensor: {orphans[:4]}; the checkpoint is damaged")
    return out


def quantization_error(state: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest |w - dequantized(w)| / max|w| per quantized tensor (at most 1/254 by construction)."""
    q = quantize_state(state)
    deq = dequantize_state(q, {CONFIG_KEY: SCHEME}, "quantization_error")
    return {
        k: float((state[k].float() - deq[k]).abs().max() / state[k].float().abs().max().clamp_min(1e-30))
        for k in state
        if q[k].dtype == torch.int8
    }
