"""Regenerate tests/fixtures/sae/: small SAEs written by SAELens's own classes, and their outputs.

Run in a scratch venv that has SAELens (it pins TransformerLens < 4, so it is not an mdm-lens dependency):
    python -m venv /work/scratch-sae/venv && /work/scratch-sae/venv/bin/pip install sae-lens==6.54.12
    PYTHONPATH=. /work/scratch-sae/venv/bin/python scripts/make_sae_goldens.py

For each architecture (standard, topk, batchtopk, jumprelu) it builds a seeded random SAE with SAELens's classes,
saves it with SAELens's own save method (`save_model`; `save_inference_model` for the BatchTopK training SAE, the
way SAELens ships one), and records `encode` / `decode` / `forward` on fixed inputs in `io.safetensors`. With
mdm-lens importable it also checks the other direction: an SAE saved by mdm-lens loads in SAELens with the same
outputs; that check's result is recorded in `facts.json` (the test reads it back as a golden fact).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sae"
D_IN, D_SAE, N = 16, 64, 12


def _randomise(sae, g: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name in ("threshold", "log_threshold"):
                continue
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() == 2 else 0.1))


def build(arch: str, seed: int):
    """A SAELens SAE of `arch` with seeded random weights, and the object whose save writes the folder."""
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    g = torch.Generator().manual_seed(seed)
    meta = {"model_name": "tiny-mdm", "hook_name": "blocks.1.hook_resid_post"}
    if arch == "standard":
        sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE))
    elif arch == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5, rescale_acts_by_decoder_norm=True))
    elif arch == "jumprelu":
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE))
    else:
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5))
    for k, v in meta.items():
        sae.cfg.metadata[k] = v
    _randomise(sae, g)
    if arch == "jumprelu":
        with torch.no_grad():
            sae.threshold.copy_(torch.rand(D_SAE, generator=g) * 0.5)
    if arch == "batchtopk":
        sae.topk_threshold = torch.tensor(0.4, dtype=torch.double)  # as if after training
    return sae


def write(arch: str, seed: int) -> dict:
    from sae_lens import SAE as LensSAE

    folder = OUT / arch
    folder.mkdir(parents=True, exist_ok=True)
    sae = build(arch, seed)
    x = torch.randn(N, D_IN, generator=torch.Generator().manual_seed(seed + 100))
    if arch == "batchtopk":  # the training rule: k * N latents over the whole batch
        with torch.no_grad():
            save_file(
                {"x": x, "train_encode": sae.encode(x).contiguous()}, str(folder.parent / "batchtopk_train.safetensors")
            )
        sae.save_inference_model(folder)
        sae = LensSAE.load_from_disk(folder)  # what SAELens itself uses at inference: a JumpReLU
    else:
        sae.save_model(folder)
    with torch.no_grad():
        f = sae.encode(x)
        io = {"x": x, "encode": f, "decode": sae.decode(f), "forward": sae(x)}
    save_file({k: v.contiguous() for k, v in io.items()}, str(folder / "io.safetensors"))
    return {
        "loaded_class": type(sae).__name__,
        "cfg_architecture": json.loads((folder / "cfg.json").read_text())["architecture"],
    }


def roundtrip(arch: str, seed: int, tmp: Path) -> dict:
    """mdm-lens load -> save -> SAELens load: SAELens's outputs on the re-saved folder equal the originals."""
    from sae_lens import SAE as LensSAE

    from interventions import SAE

    ours = SAE.load(OUT / arch)
    ours.save(tmp / arch, metadata={"note": "re-saved by mdm-lens"})
    theirs = LensSAE.load_from_disk(tmp / arch)
    io_x = torch.randn(N, D_IN, generator=torch.Generator().manual_seed(seed + 100))
    with torch.no_grad():
        ref = ours.forward(io_x)
        got = theirs(io_x)
    return {
        "sae_lens_loads_mdm_lens_save": True,
        "class": type(theirs).__name__,
        "max_abs_diff_forward": float((ref - got).abs().max()),
        "metadata_kept": theirs.cfg.metadata.get("note") == "re-saved by mdm-lens",
    }


def main() -> None:
    import tempfile

    import sae_lens

    OUT.mkdir(parents=True, exist_ok=True)
    facts: dict = {"sae_lens_version": sae_lens.__version__, "torch": torch.__version__, "architectures": {}}
    for i, arch in enumerate(("standard", "topk", "batchtopk", "jumprelu")):
        facts["architectures"][arch] = write(arch, seed=i)
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import interventions  # noqa: F401
    except ImportError:
        print("mdm-lens not importable: skipping the mdm-lens -> SAELens round trip")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            facts["roundtrip"] = {
                a: roundtrip(a, i, Path(tmp)) for i, a in enumerate(("standard", "topk", "batchtopk", "jumprelu"))
            }
    (OUT / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
