"""Regenerate tests/fixtures/fast_goldens.safetensors from Fast-dLLM's OWN code (NVlabs/Fast-dLLM).

    python scripts/make_fast_goldens.py PATH/TO/Fast-dLLM [--out tests/fixtures/fast_goldens.safetensors]

PATH is a checkout of NVlabs/Fast-dLLM: the script imports `llada/generate.py` (`generate`,
`generate_with_prefix_cache`, `generate_with_dual_cache`), `llada/model/modeling_llada.py`, and Dream's
`dream/model/modeling_dream.py` with the block sampler of `dream/model/generation_utils_block.py` bound as the
Fast-dLLM evaluation does. That code targets transformers 4.4x, so run this in a scratch environment with e.g.
transformers 4.46 (torch as in the project). None of Fast-dLLM is part of this repository.

The fixture holds a tiny seeded LLaDA and Dream (weights rounded to bf16, run in float32; configs, prompts and
cases are JSON metadata, so the test needs nothing else), each case's tokens (LLaDA: and forward count), and
the logits of Fast-dLLM's models for a full, a prefix-cached and a dual-cached forward.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "model_type": "llada",
    "architectures": ["LLaDAModelLM"],
    "activation_type": "silu",
    "alibi": False,
    "attention_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "bias_for_layer_norm": False,
    "d_model": 32,
    "embedding_size": 128,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_device": "cpu",
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "max_sequence_length": 64,
    "mlp_hidden_size": 64,
    "mlp_ratio": 4,
    "n_heads": 4,
    "n_kv_heads": 2,
    "n_layers": 2,
    "rms_norm_eps": 1e-5,
    "rope": True,
    "rope_full_precision": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "vocab_size": 128,
    "weight_tying": False,
    "flash_attention": False,
    "mask_token_id": 127,
    "eos_token_id": 120,
    "pad_token_id": 120,
    "use_cache": False,
}
MASK_ID = 127
PROMPTS = {"a": [5, 17, 99, 3, 42, 64], "b": [11, 2, 87, 30, 7, 56, 101, 9, 23]}
# Every case runs under each of Fast-dLLM's three samplers; `prompt` names a PROMPTS entry, `seed` is set
# with torch.manual_seed right before the call.
CASES = [
    dict(prompt="a", steps=16, gen_length=16, block_length=4),
    dict(prompt="b", steps=8, gen_length=16, block_length=8),
    dict(prompt="a", steps=16, gen_length=16, block_length=4, temperature=0.7),
    dict(prompt="b", steps=8, gen_length=16, block_length=8, remasking="random"),
    dict(prompt="a", steps=32, gen_length=16, block_length=4),
    dict(prompt="a", steps=16, gen_length=16, block_length=16, threshold=0.3),
    dict(prompt="a", steps=16, gen_length=16, block_length=8, threshold=0.9),
    dict(prompt="b", steps=16, gen_length=16, block_length=4, threshold=0.3),
    dict(prompt="a", steps=4, gen_length=16, block_length=4, threshold=0.3, temperature=0.5),
    dict(prompt="b", steps=8, gen_length=16, block_length=8, threshold=0.4, remasking="random", temperature=0.3),
]
SAMPLERS = {"none": "generate", "prefix": "generate_with_prefix_cache", "dual": "generate_with_dual_cache"}
DREAM_CONFIG = {
    "model_type": "Dream",
    "architectures": ["DreamModel"],
    "hidden_act": "silu",
    "hidden_size": 32,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "vocab_size": 128,
    "mask_token_id": 127,
    "pad_token_id": 120,
    "use_cache": False,
}
# Each runs with dual_cache False ("prefix") and True ("dual"); threshold None = alg "entropy".
DREAM_CASES = [
    dict(prompt="a", max_new_tokens=16, steps=16, block_length=4),
    dict(prompt="b", max_new_tokens=16, steps=8, block_length=8, temperature=0.3, alg_temp=0.5),
    dict(prompt="a", max_new_tokens=16, steps=4, block_length=4),
    dict(prompt="b", max_new_tokens=16, steps=16, block_length=16, temperature=0.4, top_k=5),
    dict(prompt="a", max_new_tokens=16, steps=16, block_length=4, threshold=0.3),
    dict(prompt="b", max_new_tokens=16, steps=16, block_length=8, threshold=0.3, temperature=0.5, top_p=0.9),
    dict(prompt="a", max_new_tokens=16, steps=16, block_length=8, threshold=0.9),
]


def seeded_weights(names_shapes: dict[str, torch.Size], seed: int = 0) -> dict[str, torch.Tensor]:
    """std-0.3 matrices, norms near 1, std-1 embeddings, a std-0.5 output head (confidences ~0.1-0.7, so a
    threshold lets some steps decode several tokens and others one),
    and a zero head row for [MASK] (a random model may otherwise predict it and never finish a block)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in sorted(names_shapes.items()):
        noise = torch.randn(shape, generator=gen)
        if "norm" in name or "ln_f" in name:
            w = 1.0 + 0.1 * noise
        elif name in ("model.transformer.ff_out.weight", "lm_head.weight"):
            w = 0.5 * noise
            w[MASK_ID] = 0
        elif name in ("model.transformer.wte.weight", "model.embed_tokens.weight"):
            w = noise
        else:
            w = 0.3 * noise
        out[name] = w.to(torch.bfloat16)
    return out


def import_fast_dllm(checkout: Path):
    """Fast-dLLM's llada/generate.py does `from model.modeling_llada import ...`: put llada/ on the path."""
    llada_dir = (checkout / "llada").resolve()
    if not (llada_dir / "generate.py").is_file():
        raise SystemExit(f"{llada_dir / 'generate.py'} not found: pass the root of a Fast-dLLM checkout")
    sys.path.insert(0, str(llada_dir))
    spec = importlib.util.spec_from_file_location("fast_dllm_generate", llada_dir / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    from model.configuration_llada import LLaDAConfig
    from model.modeling_llada import LLaDAModelLM

    return gen, LLaDAConfig, LLaDAModelLM


def import_fast_dream(checkout: Path):
    """dream/model uses relative imports: load it as a package; bind the block sampler like Fast-dLLM's eval.py."""
    folder = (checkout / "dream" / "model").resolve()
    spec = importlib.machinery.ModuleSpec("fast_dllm_dream", None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(folder)]
    sys.modules["fast_dllm_dream"] = package
    modeling = importlib.import_module("fast_dllm_dream.modeling_dream")
    config = importlib.import_module("fast_dllm_dream.configuration_dream")
    block = importlib.import_module("fast_dllm_dream.generation_utils_block")
    return modeling.DreamModel, config.DreamConfig, block.DreamGenerationMixin


def dream_goldens(checkout: Path) -> dict[str, torch.Tensor]:
    model_cls, config_cls, mixin = import_fast_dream(checkout)
    cfg = config_cls(**{k: v for k, v in DREAM_CONFIG.items() if k not in ("model_type", "architectures")})
    model = model_cls(cfg).eval()
    model.diffusion_generate = types.MethodType(mixin.diffusion_generate, model)
    model._sample = types.MethodType(mixin._sample, model)
    weights = seeded_weights({k: v.shape for k, v in model.state_dict().items()}, seed=1)
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    out = {f"dw.{k}": v for k, v in weights.items()}
    ids = torch.tensor([PROMPTS["a"] + [40, 41, 42, 43] + [MASK_ID] * 12])
    start, stop = 10, 14
    with torch.no_grad():
        full = model(ids, "full", None, use_cache=True)
        out["dream_fwd_full"] = full.logits
        past = [tuple(t[:, :start] for t in layer) for layer in full.past_key_values]
        out["dream_fwd_prefix"] = model(ids[:, start:], "full", None, past_key_values=past, use_cache=True).logits
        replace = torch.zeros_like(ids, dtype=torch.bool)
        replace[:, start:stop] = True
        out["dream_fwd_dual"] = model(
            ids[:, start:stop],
            "full",
            None,
            past_key_values=full.past_key_values,
            use_cache=True,
            dual_cache=True,
            replace_position=replace,
        ).logits
    for i, case in enumerate(DREAM_CASES):
        kw = {k: v for k, v in case.items() if k != "prompt"}
        threshold = kw.pop("threshold", None)
        kw.update(
            alg="entropy" if threshold is None else "confidence_threshold",
            threshold=0.9 if threshold is None else threshold,
        )
        # explicit sampling settings: otherwise `from_model_config` inherits transformers 4.x's config-level
        # generation defaults (temperature 1.0, top_k 50)
        for key, default in (("temperature", 0.0), ("top_p", None), ("top_k", None), ("alg_temp", None)):
            kw.setdefault(key, default)
        prompt = torch.tensor([PROMPTS[case["prompt"]]])
        for cache in ("prefix", "dual"):
            torch.manual_seed(2000 + i)
            with torch.no_grad():
                x = model.diffusion_generate(prompt, mask_token_id=MASK_ID, dual_cache=cache == "dual", **kw)
            out[f"dream{i}.{cache}"] = x
            print(f"dream {i} {cache:6s} {x[0, prompt.shape[1] :].tolist()}")
    return out


def cached_forward_logits(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fast-dLLM's model on a prefix-cached and a dual-cached forward over a half-decoded canvas."""
    start, stop = 10, 14
    with torch.no_grad():
        full = model(ids, use_cache=True)
        past = [tuple(t[:, :, :start] for t in layer) for layer in full.past_key_values]
        prefix = model(ids[:, start:], past_key_values=past, use_cache=True).logits
        full = model(ids, use_cache=True)
        replace = torch.zeros_like(ids, dtype=torch.bool)
        replace[:, start:stop] = True
        dual = model(
            ids[:, start:stop], past_key_values=full.past_key_values, use_cache=True, replace_position=replace
        ).logits
    return {"fwd_full": full.logits, "fwd_prefix": prefix, "fwd_dual": dual}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fast_dllm", type=Path, help="root of a NVlabs/Fast-dLLM checkout")
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/fast_goldens.safetensors"))
    args = ap.parse_args()
    gen, config_cls, model_cls = import_fast_dllm(args.fast_dllm)
    cfg = config_cls(**{k: v for k, v in CONFIG.items() if k not in ("model_type", "architectures")})
    model = model_cls(cfg, init_params=False).eval()
    weights = seeded_weights({k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)

    out = {f"w.{k}": v for k, v in weights.items()}
    canvas = torch.tensor([PROMPTS["a"] + [40, 41, 42, 43] + [MASK_ID] * 12])
    out["fwd_ids"] = canvas
    out.update(cached_forward_logits(model, canvas))
    for i, case in enumerate(CASES):
        kw = {k: v for k, v in case.items() if k != "prompt"}
        prompt = torch.tensor([PROMPTS[case["prompt"]]])
        for cache, fn in SAMPLERS.items():
            torch.manual_seed(1000 + i)
            x, nfe = getattr(gen, fn)(model, prompt, mask_id=MASK_ID, **kw)
            assert not bool((x == MASK_ID).any()), (case, cache)
            out[f"case{i}.{cache}"] = x
            out[f"case{i}.{cache}.nfe"] = torch.tensor(nfe)
            print(f"case {i} {cache:6s} nfe={nfe:3d} {x[0, prompt.shape[1] :].tolist()}")
    out.update(dream_goldens(args.fast_dllm))
    meta = {
        "config": json.dumps(CONFIG),
        "prompts": json.dumps(PROMPTS),
        "cases": json.dumps(CASES),
        "dream_config": json.dumps(DREAM_CONFIG),
        "dream_cases": json.dumps(DREAM_CASES),
        "dream_seed_base": "2000",
        "samplers": json.dumps(SAMPLERS),
        "seed_base": "1000",
        "forward_span": "[10, 14]",
        "source": "NVlabs/Fast-dLLM llada/generate.py + llada/model/modeling_llada.py, dream/model/",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, args.out, metadata=meta)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
