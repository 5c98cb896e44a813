"""Regenerate tests/fixtures/patching_goldens.safetensors with TransformerLens 4.3's own `transformer_lens.patching`.

Run in a scratch venv that has `transformer-lens==4.3.0` (made with `--system-site-packages` over the project venv,
so that mdm-lens imports there too), from the repository root:

    PYTHONPATH=$PWD SCRATCH/venv/bin/python scripts/make_patching_goldens.py [--out tests/fixtures/patching_goldens.safetensors]

TL 4.x has no HookedTransformer to rebuild LLaDA in (it was removed in 4.0) and its LLaDA bridge needs the hub's
remote code; TL's patching functions, though, take any model of its `TransformerLensModel` protocol (`cfg`,
`run_with_hooks`, eval mode), which `HookedMDM` is (given TL's `cfg.device`: `TLView`). So TL's own functions (its loops, index frames, setters and
metric handling) run here on `mdm_lens.testing.tiny_model("llada", seed=0)`, whose forward and hook tensors equal
TL's LLaDA bridge on these weights (tests/test_tl_parity.py); the test compares `analyses.patching` with them.
One input pair: batch 2, 10 positions (the last 4 the mask id, a denoising step's canvas), the corrupted input
differing at positions 1-2; the metric is TL's usual logit difference at the last position, averaged over the batch.
"""

from __future__ import annotations

import argparse
import json

import torch

SEQ, N_MASK = 10, 4
TOKENS = (11, 23)  # metric: logit[TOKENS[0]] - logit[TOKENS[1]] at the last position
FUNCTIONS = (
    "get_act_patch_resid_pre",
    "get_act_patch_resid_mid",
    "get_act_patch_attn_out",
    "get_act_patch_mlp_out",
    "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_out_by_pos",
    "get_act_patch_block_every",
)


def metric(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, -1, TOKENS[0]] - logits[:, -1, TOKENS[1]]).mean()


def inputs(mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    clean = torch.randint(0, 250, (2, SEQ), generator=gen)
    clean[:, -N_MASK:] = mask_id
    corrupted = clean.clone()
    corrupted[:, 1:3] = torch.randint(0, 250, (2, 2), generator=gen)
    return clean, corrupted


class TLView:
    """The model as TL's patching sees it: `cfg` with TL's `device` field (MDMConfig has none), the rest passed on."""

    def __init__(self, model):
        import dataclasses
        import types

        self.model = model
        self.cfg = types.SimpleNamespace(**dataclasses.asdict(model.cfg), device=model.input_device)

    def __getattr__(self, name):
        return getattr(self.model, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/patching_goldens.safetensors")
    args = ap.parse_args()
    from importlib.metadata import version

    import transformer_lens
    from safetensors.torch import save_file
    from transformer_lens import patching

    from mdm_lens.testing import tiny_model

    model = tiny_model("llada", seed=0).eval()
    clean, corrupted = inputs(model.mask_id)
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(clean)
        corrupted_logits = model(corrupted)
    res = {
        "clean": clean,
        "corrupted": corrupted,
        "logits.clean": clean_logits.contiguous(),
        "logits.corrupted": corrupted_logits.contiguous(),
    }
    with torch.no_grad():
        for name in FUNCTIONS:
            res[name] = getattr(patching, name)(TLView(model), corrupted, cache, metric).float().contiguous()
    meta = {
        "functions": list(FUNCTIONS),
        "metric": f"(logits[:, -1, {TOKENS[0]}] - logits[:, -1, {TOKENS[1]}]).mean()",
        "transformer_lens": version("transformer-lens"),
        "torch": torch.__version__,
        "model": "mdm_lens.testing.tiny_model('llada', seed=0)",
        "tl_module": transformer_lens.patching.__name__,
    }
    save_file(res, args.out, metadata={"meta": json.dumps(meta)})
    print(f"wrote {args.out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in res.items()))


if __name__ == "__main__":
    main()
