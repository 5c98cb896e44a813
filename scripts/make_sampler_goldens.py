"""Regenerate tests/fixtures/sampler_goldens.safetensors from the REFERENCE samplers.

    python scripts/make_sampler_goldens.py --llada-ref PATH/generate.py --dream-ref PATH/dream_sample.py

`--llada-ref`: ML-GSAI/LLaDA's generate.py, with its hard-coded EOS/EOT ids (126081 / 126348) replaced by
the tiny tokenizer's (275 / 278) since the tiny vocab has 320 ids. `--dream-ref`: a module exposing
`ref_sample(model, input_ids, attention_mask, max_new_tokens, mask_token_id, steps, **alg_kwargs)` that
runs Dream's `_sample` (generation_utils.py of Dream-org/Dream-v0-Instruct-7B) over `model`. Neither file
is part of this repository. Both run on the tiny seeded models the tests build.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from sampler_cases import DREAM_CASES, LLADA_CASES, case_seed, prompts  # noqa: E402


def _module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Out:
    def __init__(self, logits):
        self.logits = logits


class _Ref(torch.nn.Module):
    """The reference samplers call `model(...).logits` and read `model.device`."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    @property
    def device(self):
        return next(self.inner.parameters()).device

    def forward(self, *args, **kwargs):
        return _Out(self.inner(*args, **kwargs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llada-ref", required=True)
    ap.add_argument("--dream-ref", required=True)
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/sampler_goldens.safetensors"))
    args = ap.parse_args()
    from mdm_lens.loading import build_random_model
    from mdm_lens.testing import tiny_config

    llada_ref = _module(args.llada_ref, "llada_ref")
    dream_ref = _module(args.dream_ref, "dream_ref")
    out = {}
    llada = _Ref(build_random_model(tiny_config("llada"), seed=0).eval())
    for i, case in enumerate(LLADA_CASES):
        case = dict(case)
        ids, mask = prompts(case.pop("padded", False))
        torch.manual_seed(case_seed(i))
        out[f"llada_{i}"] = llada_ref.generate(llada, ids, attention_mask=mask, mask_id=319, **case)
    dream = _Ref(build_random_model(tiny_config("dream"), seed=0).eval())
    for i, case in enumerate(DREAM_CASES):
        case = dict(case)
        ids, mask = prompts(case.pop("padded", False))
        torch.manual_seed(case_seed(i))
        with torch.no_grad():
            out[f"dream_{i}"] = dream_ref.ref_sample(dream, ids, mask, mask_token_id=319, **case)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, args.out)
    print(f"wrote {len(out)} golden token tensors to {args.out}")


if __name__ == "__main__":
    main()
