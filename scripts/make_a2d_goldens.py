"""Regenerate tests/fixtures/a2d_golden.safetensors from dllm's *original* A2D code (ZHZisZZ/dllm).

    python scripts/make_a2d_goldens.py --dllm DIR [--out tests/fixtures]

DIR is a checkout of ZHZisZZ/dllm (the folder holding the `dllm` package). Only these files are imported, by
path, without running the package's `__init__` (which pulls in training code): `dllm/pipelines/a2d/models/
{qwen3,qwen2,llama}/modeling_*.py`, `dllm/core/schedulers/`, `dllm/core/samplers/{base,utils,mdlm,bd3lm}.py`.
That code targets transformers 4.x (4.57 here), so run this in such an environment. This repository holds none
of it: the script only imports it.

For each family (a2d-qwen3 with QK-norm and tied embeddings, a2d-qwen2 with q/k/v bias and tied embeddings,
a2d-llama with llama3 rope scaling) the fixture holds a tiny seeded model's weights (rounded to bf16, stored as
bf16; a tied checkpoint has no lm_head, as save_pretrained writes it) and the reference logits, float32 and
bfloat16, for: no mask; a left-padding [B, P] mask; a right-padding mask (the MDLM sampler's EOS tail); the
BD3LM sampler's block-causal 4-D bool mask with its logical position ids; and the BD3LM sampler's cached call
(prefix forward with use_cache, then the block's columns against that cache). Then the samplers' tokens:
MDLMSampler.sample / BD3LMSampler.sample on the float32 reference model, greedy and seeded, per case.
Config and cases are in the metadata.
"""

from __future__ import annotations

import argparse
import copy
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_model_goldens import seeded_weights  # noqa: E402  (the house's seeded bf16 weights)

VOCAB, MASK, EOS, PAD, BOS = 128, 127, 120, 121, 122
COMMON = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "vocab_size": VOCAB,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "mask_token_id": MASK,
    "eos_token_id": EOS,
    "pad_token_id": PAD,
    "bos_token_id": BOS,
    "use_cache": False,
}
CONFIGS = {
    "a2d_qwen3": {
        **COMMON,
        "model_type": "a2d-qwen3",
        "architectures": ["A2DQwen3LMHeadModel"],
        "head_dim": 16,  # != hidden / heads, as in Qwen3-0.6B (o_proj is [hidden, heads * head_dim])
        "rope_theta": 1000000.0,
        "attention_bias": False,
        "tie_word_embeddings": True,
    },
    "a2d_qwen2": {
        **COMMON,
        "model_type": "a2d-qwen2",
        "architectures": ["A2DQwen2LMHeadModel"],
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
    "a2d_llama": {
        **COMMON,
        "model_type": "a2d-llama",
        "architectures": ["A2DLlamaLMHeadModel"],
        "max_position_embeddings": 16384,  # > original_max_position_embeddings, as transformers asks
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        # head_dim 8: the four frequencies fall in the high, medium and low bands of llama3 scaling
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
}
FILES = {"a2d_qwen3": "qwen3/modeling_qwen3", "a2d_qwen2": "qwen2/modeling_qwen2", "a2d_llama": "llama/modeling_llama"}
CLASSES = {
    "a2d_qwen3": ("A2DQwen3Config", "A2DQwen3LMHeadModel"),
    "a2d_qwen2": ("A2DQwen2Config", "A2DQwen2LMHeadModel"),
    "a2d_llama": ("A2DLlamaConfig", "A2DLlamaLMHeadModel"),
}
PROMPTS = [[5, 17, 33, 2, 64], [9, 41, 77]]
BLOCK = 4  # block size of the BD3LM mask in the logit goldens
# Sampler cases: (sampler, family, seed or None for greedy, kwargs). "eos": "auto" picks an EOS id that the
# greedy run writes into the first block of every row, so the BD3LM early stop (all rows done) is exercised;
# "rows" picks which PROMPTS the case samples (default all).
CASES = [
    ("mdlm", "a2d_qwen3", None, {"max_new_tokens": 8, "block_size": 4, "steps": 8}),
    ("mdlm", "a2d_qwen3", 11, {"max_new_tokens": 8, "block_size": 8, "steps": 6, "temperature": 0.8}),
    (
        "mdlm",
        "a2d_qwen3",
        12,
        {
            "max_new_tokens": 6,
            "block_size": 3,
            "steps": 4,
            "remasking": "random",
            "temperature": 0.5,
            "stochastic_transfer": True,
        },
    ),
    (
        "mdlm",
        "a2d_qwen3",
        None,
        {
            "max_new_tokens": 8,
            "block_size": 8,
            "steps": 5,
            "cfg_scale": 1.5,
            "suppress_tokens": [3, 4],
            "begin_suppress_tokens": [7],
            "right_shift_logits": True,
        },
    ),
    ("mdlm", "a2d_qwen2", None, {"max_new_tokens": 8, "block_size": 4, "steps": 8}),
    ("mdlm", "a2d_llama", None, {"max_new_tokens": 8, "block_size": 4, "steps": 8}),
    ("bd3lm", "a2d_qwen3", None, {"max_new_tokens": 8, "block_size": 4, "steps": 8}),
    (
        "bd3lm",
        "a2d_qwen3",
        21,
        {"max_new_tokens": 12, "block_size": 4, "steps": 6, "temperature": 0.7, "remasking": "random"},
    ),
    (
        "bd3lm",
        "a2d_qwen3",
        22,
        {"max_new_tokens": 10, "block_size": 4, "steps": 9, "temperature": 0.6, "stochastic_transfer": True},
    ),
    (
        "bd3lm",
        "a2d_qwen3",
        None,
        {"max_new_tokens": 8, "block_size": 4, "steps_per_block": 3, "cfg_scale": 1.0, "right_shift_logits": True},
    ),
    ("bd3lm", "a2d_qwen3", None, {"max_new_tokens": 12, "block_size": 4, "steps": 12, "eos": "auto", "rows": [0]}),
    ("bd3lm", "a2d_qwen2", None, {"max_new_tokens": 8, "block_size": 4, "steps": 8}),
    ("bd3lm", "a2d_llama", None, {"max_new_tokens": 8, "block_size": 4, "steps": 8}),
]


def _package(name: str, path: Path) -> None:
    """An empty package `name` over `path`: its submodules import, its __init__ never runs."""
    if name not in sys.modules:
        mod = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None, is_package=True))
        mod.__path__ = [str(path)]
        sys.modules[name] = mod


def import_dllm(root: str) -> types.SimpleNamespace:
    base = Path(root).resolve() / "dllm"
    _package("dllm", base)
    _package("dllm.core", base / "core")
    _package("dllm.core.samplers", base / "core" / "samplers")
    _package("dllm.pipelines", base / "pipelines")
    _package("dllm.pipelines.a2d", base / "pipelines" / "a2d")
    _package("dllm.pipelines.a2d.models", base / "pipelines" / "a2d" / "models")
    ns = types.SimpleNamespace()
    ns.mdlm = importlib.import_module("dllm.core.samplers.mdlm")
    ns.bd3lm = importlib.import_module("dllm.core.samplers.bd3lm")
    ns.models = {}
    for fam, f in FILES.items():
        _package(
            f"dllm.pipelines.a2d.models.{f.split('/')[0]}", base / "pipelines" / "a2d" / "models" / f.split("/")[0]
        )
        ns.models[fam] = importlib.import_module("dllm.pipelines.a2d.models." + f.replace("/", "."))
    return ns


def build(ns, fam: str, weights: dict[str, torch.Tensor], dtype: torch.dtype):
    """The reference model in `dtype`, its inv_freq left in float32 as from_pretrained(dtype=...) leaves it."""
    cfg_cls, model_cls = (getattr(ns.models[fam], c) for c in CLASSES[fam])
    fields = {k: v for k, v in CONFIGS[fam].items() if k not in ("model_type", "architectures")}
    cfg = cfg_cls(**fields)
    cfg._attn_implementation = "sdpa"
    model = model_cls(cfg).eval()
    if not weights:
        return model
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    inv = model.model.rotary_emb.inv_freq.clone()
    model.to(dtype)
    model.model.rotary_emb.inv_freq = inv
    return model


def logit_inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB - 8, (2, 12), generator=gen)
    ids[:, 8:] = MASK
    left = torch.ones(2, 12, dtype=torch.long)
    left[1, :3] = 0
    right = torch.ones(2, 12, dtype=torch.long)
    right[1, 9:] = 0
    bd_ids = ids.clone()
    bd_ids[1, :3] = PAD  # left padding of the BD3LM canvas: the pad id marks it
    return {"input_ids": ids, "mask_left": left, "mask_right": right, "bd3lm_ids": bd_ids}


def logits_for(ns, model, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ids, bd = x["input_ids"], x["bd3lm_ids"]
    out = {}
    with torch.no_grad():
        out["plain"] = model(ids).logits
        out["left"] = model(ids, attention_mask=x["mask_left"]).logits
        out["right"] = model(ids, attention_mask=x["mask_right"]).logits
        mask4, pos = ns.bd3lm._prepare_for_sampling(bd, BLOCK, PAD)
        out["bd3lm"] = model(bd, attention_mask=mask4, position_ids=pos).logits
        # the sampler's cached call: prefix = first 8 columns, then the last block of 4 against a copy of the cache
        pm, pp = ns.bd3lm._prepare_for_sampling(bd[:, :8], BLOCK, PAD)
        past = model(bd[:, :8], attention_mask=pm, position_ids=pp, use_cache=True).past_key_values
        out["bd3lm_cached"] = model(
            bd[:, 8:],
            attention_mask=mask4[:, :, 8:],
            position_ids=pos[:, 8:],
            past_key_values=copy.deepcopy(past),
            use_cache=False,
        ).logits
    return out


class _Tok:
    mask_token_id, bos_token_id, eos_token_id, pad_token_id = MASK, BOS, EOS, PAD


def run_case(ns, model, sampler: str, seed: int | None, kwargs: dict) -> torch.Tensor:
    tok = _Tok()
    kw = dict(kwargs)
    if "eos" in kw:
        tok.eos_token_id = kw.pop("eos")
    prompts = [list(PROMPTS[r]) for r in kw.pop("rows", range(len(PROMPTS)))]
    if sampler == "mdlm":
        s, cfg = ns.mdlm.MDLMSampler(model=model, tokenizer=tok), ns.mdlm.MDLMSamplerConfig()
    else:
        s, cfg = ns.bd3lm.BD3LMSampler(model=model, tokenizer=tok), ns.bd3lm.BD3LMSamplerConfig()
    torch.manual_seed(seed if seed is not None else 0)
    return s.sample(prompts, cfg, **kw)


def auto_eos(ns, model, kwargs: dict) -> int:
    """A token the greedy run writes into the first generated block of every row (so all rows stop there)."""
    kw = {k: v for k, v in kwargs.items() if k != "eos"}
    out = run_case(ns, model, "bd3lm", None, {**kw, "eos": -1})
    width = out.shape[1] - kw["max_new_tokens"]
    rows = [set(r[width : width + kw["block_size"]].tolist()) for r in out]
    common = sorted(set.intersection(*rows))
    assert common, f"no token shared by every row's first block: {rows}"
    return common[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dllm", required=True, help="a ZHZisZZ/dllm checkout (the folder holding `dllm/`)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
    args = ap.parse_args()
    ns = import_dllm(args.dllm)
    torch.set_num_threads(1)
    x = logit_inputs()
    tensors: dict[str, torch.Tensor] = {f"in.{k}": v for k, v in x.items()}
    models = {}
    for fam in CONFIGS:
        ref = build(ns, fam, {}, torch.float32)
        weights = seeded_weights(ref, 0)
        if CONFIGS[fam]["tie_word_embeddings"]:
            weights.pop("lm_head.weight")
        tensors.update({f"{fam}.w.{k}": v for k, v in weights.items()})
        for dtype, tag in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
            model = build(ns, fam, weights, dtype)
            tensors.update({f"{fam}.{tag}.{k}": v for k, v in logits_for(ns, model, x).items()})
            if dtype == torch.float32:
                models[fam] = model
    cases = []
    for i, (sampler, fam, seed, kwargs) in enumerate(CASES):
        kw = dict(kwargs)
        if kw.get("eos") == "auto":
            kw["eos"] = auto_eos(ns, models[fam], kw)
        tensors[f"case{i}"] = run_case(ns, models[fam], sampler, seed, kw)
        cases.append({"sampler": sampler, "family": fam, "seed": seed, "kwargs": kw})
        print(f"case {i}: {sampler} {fam} seed={seed} {kw} -> {tensors[f'case{i}'].tolist()}")
    meta = {
        "configs": json.dumps(CONFIGS),
        "prompts": json.dumps(PROMPTS),
        "cases": json.dumps(cases),
        "ids": json.dumps({"mask": MASK, "eos": EOS, "pad": PAD, "bos": BOS, "bd3lm_block": BLOCK}),
        "source": "ZHZisZZ/dllm a2d modeling + core samplers, transformers 4.57",
    }
    out = Path(args.out) / "a2d_golden.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out), metadata=meta)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
