"""Regenerate tests/fixtures/likelihood_golden.safetensors from the REFERENCE likelihood estimator.

    python scripts/make_likelihood_golden.py --ref PATH/get_log_likelihood.py

`--ref`: ML-GSAI/LLaDA's get_log_likelihood.py, unmodified (not part of this repository). Its
`get_log_likelihood(model, prompt, answer, mc_num, batch_size, cfg_scale, mask_id)` is run on the tiny seeded
LLaDA and Dream models the tests build (`build_random_model(tiny_config(family), seed=0)`, mask id 319).
Dream predicts token j from position j-1, which the reference does not know: its golden runs the reference
over a wrapper that shifts Dream's logits one place right (what Dream's own sampler does), so it checks that
mdm_lens.likelihood applies that shift and otherwise estimates exactly as the reference.

Stored: per case `case{i}_prompt`, `case{i}_answer` (int64 ids) and `case{i}_ll` (float64, the reference's
value after `torch.manual_seed(seed)`); the case settings are in the JSON metadata "cases". A batch of pairs
`batch{j}_prompt/answer` with `batch_seeded_ll` (each pair after `torch.manual_seed(seed_j)`) and
`batch_sequential_ll` (one `torch.manual_seed(20)` then the reference on each pair in turn).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
MASK_ID = 319

# family, prompt length, answer length, mc_num, batch_size, cfg_scale, seed
CASES = [
    ("llada", 5, 7, 32, 16, 0.0, 0),
    ("llada", 3, 1, 4, 4, 0.0, 1),  # one-token answer
    ("llada", 6, 11, 12, 3, 0.0, 2),  # L / b not a binary fraction: the linspace rounding matters
    ("llada", 4, 9, 8, 8, 1.5, 3),  # classifier-free guidance
    ("llada", 0, 6, 8, 4, 0.0, 4),  # empty prompt
    ("llada", 2, 5, 14, 7, 0.0, 7),  # more rows than answer tokens: counts wrap into 1..L
    ("dream", 5, 8, 16, 8, 0.0, 5),
    ("dream", 4, 6, 8, 4, 0.5, 6),
]
BATCH = {
    "lengths": [(3, 4), (6, 9), (2, 4), (5, 13)],
    "mc_num": 16,
    "batch_size": 8,
    "seeds": [10, 11, 12, 13],
    "sequential_seed": 20,
}


def _module(path: str):
    spec = importlib.util.spec_from_file_location("llada_likelihood_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Out:
    def __init__(self, logits):
        self.logits = logits


class _Ref(torch.nn.Module):
    """The reference calls `model(batch).logits` and reads `model.device`; `shift` applies Dream's shift."""

    def __init__(self, inner, shift: bool):
        super().__init__()
        self.inner, self.shift = inner, shift

    @property
    def device(self):
        return next(self.inner.parameters()).device

    def forward(self, ids):
        logits = self.inner(ids)
        if self.shift:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return _Out(logits)


def random_ids(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, MASK_ID, (n,), generator=gen)  # never the mask id


def models() -> dict:
    from mdm_lens.loading import build_random_model
    from mdm_lens.testing import tiny_config

    return {f: build_random_model(tiny_config(f), seed=0).eval() for f in ("llada", "dream")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, help="path to ML-GSAI/LLaDA's get_log_likelihood.py")
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/likelihood_golden.safetensors"))
    args = ap.parse_args()
    ref = _module(args.ref)
    nets = models()
    wrapped = {f: _Ref(m, shift=(f == "dream")) for f, m in nets.items()}
    gen = torch.Generator().manual_seed(1234)
    out: dict[str, torch.Tensor] = {}
    for i, (family, lp, la, mc, b, cfg, seed) in enumerate(CASES):
        prompt, answer = random_ids(lp, gen), random_ids(la, gen)
        torch.manual_seed(seed)
        ll = ref.get_log_likelihood(
            wrapped[family], prompt, answer, mc_num=mc, batch_size=b, cfg_scale=cfg, mask_id=MASK_ID
        )
        out[f"case{i}_prompt"], out[f"case{i}_answer"] = prompt, answer
        out[f"case{i}_ll"] = torch.tensor(ll, dtype=torch.float64)
    pairs = [(random_ids(lp, gen), random_ids(la, gen)) for lp, la in BATCH["lengths"]]
    seeded = []
    for (prompt, answer), seed in zip(pairs, BATCH["seeds"]):
        torch.manual_seed(seed)
        seeded.append(
            ref.get_log_likelihood(
                wrapped["llada"],
                prompt,
                answer,
                mc_num=BATCH["mc_num"],
                batch_size=BATCH["batch_size"],
                mask_id=MASK_ID,
            )
        )
    torch.manual_seed(BATCH["sequential_seed"])
    sequential = [
        ref.get_log_likelihood(
            wrapped["llada"], prompt, answer, mc_num=BATCH["mc_num"], batch_size=BATCH["batch_size"], mask_id=MASK_ID
        )
        for prompt, answer in pairs
    ]
    for j, (prompt, answer) in enumerate(pairs):
        out[f"batch{j}_prompt"], out[f"batch{j}_answer"] = prompt, answer
    out["batch_seeded_ll"] = torch.tensor(seeded, dtype=torch.float64)
    out["batch_sequential_ll"] = torch.tensor(sequential, dtype=torch.float64)
    meta = {
        "cases": json.dumps(
            [
                dict(zip(("family", "prompt_len", "answer_len", "mc_num", "batch_size", "cfg_scale", "seed"), c))
                for c in CASES
            ]
        ),
        "batch": json.dumps(BATCH),
        "mask_id": str(MASK_ID),
        "torch": torch.__version__,
        "reference": "ML-GSAI/LLaDA get_log_likelihood.py",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, args.out, metadata=meta)
    print(f"wrote {len(CASES)} cases and a batch of {len(pairs)} pairs to {args.out}")
    for i, c in enumerate(CASES):
        print(i, c, float(out[f"case{i}_ll"]))


if __name__ == "__main__":
    main()
