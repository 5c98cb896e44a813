"""SAEs on disk in SAELens 6's layout: a folder with `cfg.json` and `sae_weights.safetensors`.

cfg.json holds SAELens's `SAEConfig.to_dict()` fields (`architecture`, `d_in`, `d_sae`, `dtype`, `device`,
`apply_b_dec_to_input`, `normalize_activations`, `reshape_activations`, `metadata`, and `k` /
`rescale_acts_by_decoder_norm` for topk); the weights are `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`,
`b_dec` and, for jumprelu, `threshold`. SAELens's `metadata` is an open dict: it carries `model_name` and
`hook_name`, and mdm-lens adds its own block under `metadata["mdm_lens"]` (family, site width, variant, steps,
mask ratios), which SAELens keeps and ignores. A BatchTopK SAE is written as a JumpReLU with its inference
threshold on every latent, exactly as SAELens's `save_inference_model` writes one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mdm_lens.safefile import open_safetensors, read_json, reading, save_safetensors_atomic, write_text_atomic

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu")
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _parse_dtype(name: str, path: Path) -> torch.dtype:
    short = str(name).removeprefix("torch.")
    if short not in _DTYPES:
        raise ValueError(f"{path}: dtype {name!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[short]


def sae_config(sae: Any, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cfg.json dict SAELens 6 writes for this SAE (batchtopk as jumprelu, like `save_inference_model`)."""
    arch = "jumprelu" if sae.architecture == "batchtopk" else sae.architecture
    meta = {**sae.metadata, **(metadata or {})}
    if sae.architecture == "batchtopk":
        meta.setdefault("mdm_lens", {})
        meta["mdm_lens"] = {**meta["mdm_lens"], "trained_architecture": "batchtopk", "batch_k": sae.k}
    cfg: dict[str, Any] = {
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": _dtype_name(sae.W_enc.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": meta,
        "architecture": arch,
    }
    if arch == "topk":
        cfg["k"] = sae.k
        cfg["rescale_acts_by_decoder_norm"] = sae.rescale_acts_by_decoder_norm
    return cfg


def sae_tensors(sae: Any) -> dict[str, torch.Tensor]:
    """The weights under SAELens's key names; a batchtopk SAE's decoder norms are folded in first when it
    rescales by them (SAELens's `_fold_norm_topk`), so the written JumpReLU encodes the same latents."""
    with torch.no_grad():
        W_enc, b_enc, W_dec = sae.W_enc.detach(), sae.b_enc.detach(), sae.W_dec.detach()
        out = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": sae.b_dec.detach()}
        if sae.architecture == "batchtopk" and sae.rescale_acts_by_decoder_norm:
            norm = W_dec.norm(dim=-1).clamp_min(1e-8)
            out.update(W_enc=W_enc * norm, b_enc=b_enc * norm, W_dec=W_dec / norm[:, None])
        if sae.architecture in ("jumprelu", "batchtopk"):
            out["threshold"] = sae.threshold.detach()
    return {k: v.contiguous().cpu() for k, v in out.items()}


def save_sae(sae: Any, path, metadata: dict[str, Any] | None = None) -> None:
    """Write the folder (weights first, then cfg.json; each file atomically). NaN weights are refused."""
    sae.check_finite()
    cfg = sae_config(sae, metadata)
    try:
        text = json.dumps(cfg, indent=2)
    except TypeError as e:
        raise TypeError(f"SAE metadata must be JSON-serialisable: {e}") from None
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors_atomic(sae_tensors(sae), folder / WEIGHTS, None)
    write_text_atomic(text, folder / CFG)


def _check_cfg(cfg: Any, path: Path) -> None:
    if not isinstance(cfg, dict):
        raise TypeError(f"{path / CFG} must hold a JSON object, got {type(cfg).__name__}")
    arch = cfg.get("architecture", "standard")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: SAE architecture {arch!r} is not supported; mdm-lens reads {ARCHITECTURES}")
    for key, fine in (("normalize_activations", "none"), ("reshape_activations", "none")):
        if cfg.get(key, fine) != fine:
            raise ValueError(
                f"{path}: {key}={cfg[key]!r} is not supported (only {fine!r}); fold the "
                "normalisation into the weights with SAELens before saving"
            )
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            raise ValueError(f"{path / CFG}: {key} must be a positive integer, got {cfg.get(key)!r}")


def read_sae_folder(path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(cfg, tensors) of a SAELens-layout folder; shapes checked against cfg.json, only the tensors the
    architecture uses are returned. `interventions.SAE.load` builds the SAE from them."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; an SAE is a folder with {CFG} and {WEIGHTS}")
    cfg = read_json(folder / CFG, "an SAE config (SAELens cfg.json)")
    _check_cfg(cfg, folder)
    arch, d_in, d_sae = cfg.get("architecture", "standard"), cfg["d_in"], cfg["d_sae"]
    what = "SAE weights (SAELens sae_weights.safetensors)"
    with open_safetensors(folder / WEIGHTS, what) as f, reading(folder / WEIGHTS, what):
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle)
    want = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if arch == "jumprelu":
        want["threshold"] = (d_sae,)
    for k, shape in want.items():
        if k not in tensors:
            raise ValueError(
                f"{folder / WEIGHTS} lacks {k!r} (has {sorted(tensors)}); a {arch} SAE needs {sorted(want)}"
            )
        if tuple(tensors[k].shape) != shape:
            raise ValueError(f"{folder / WEIGHTS}: {k} has shape {tuple(tensors[k].shape)}, cfg.json says {shape}")
    cfg = {**cfg, "architecture": arch, "torch_dtype": _parse_dtype(cfg.get("dtype", "float32"), folder)}
    return cfg, {k: tensors[k] for k in want}


__all__ = ["ARCHITECTURES", "CFG", "WEIGHTS", "read_sae_folder", "sae_config", "sae_tensors", "save_sae"]
