"""Regenerate tests/fixtures/{llada2,lladamoe}_golden.safetensors from the *original* MoE modeling code.

    python scripts/make_moe_goldens.py --llada2-ref DIR --llada21-ref DIR --lladamoe-ref DIR --llada-generate FILE

DIRs hold ZHZisZZ/dllm's modeling files: `modeling_llada2_moe.py` + `configuration_llada2_moe.py`
(dllm/pipelines/llada2/models), `modeling_llada21_moe.py` + `configuration_llada21_moe.py` (llada21/models),
`modeling_lladamoe.py` + `configuration_lladamoe.py` (llada/models); FILE is ML-GSAI/LLaDA's generate.py (LLaDA-MoE
decodes with it). That code targets transformers 4.x: run this in an environment with transformers 4.5x
(/work/venv-tf4 has 4.57). This repository contains none of it: the script only imports it.

Each fixture holds a tiny seeded model's weights (rounded to bf16; expert biases included), the inputs and the
reference logits, run in float32 and in bfloat16 (`__bf16_*`), for the calls the samplers make:
  LLaDA2:    (a) full bidirectional `model(x)`; (b) the block-causal mask of LLaDA2's sampler
             (`tril(ones(blocks)).repeat_interleave(block).log().to(bfloat16)`, with position_ids) on the whole
             canvas and on a window `x[:, :end]`; (c) left padding: keys of padded columns hidden (given to the
             reference as the equivalent bool 4D mask, position_ids = cumsum - 1 as its prepare_inputs builds them);
             (d) the LLaDA2.1 modeling file on case (b), same weights.
  LLaDA-MoE: (a) full; (c) left padding `model(x, attention_mask=m)`; (g) token ids of LLaDA's generate.py on
             the reference model, two seeded cases (greedy and temperature 0.7).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_model_goldens import import_ref, seeded_weights  # noqa: E402

LLADA2_CONFIG = {
    "model_type": "llada2_moe",
    "architectures": ["LLaDA2MoeModelLM"],
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 3,
    "first_k_dense_replace": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "partial_rotary_factor": 0.5,
    "use_qkv_bias": True,
    "use_qk_norm": True,
    "use_bias": True,
    "rms_norm_eps": 1e-6,
    "rope_theta": 600000.0,
    "max_position_embeddings": 64,
    "num_experts": 8,
    "num_shared_experts": 1,
    "num_experts_per_tok": 2,
    "n_group": 4,
    "topk_group": 2,
    "routed_scaling_factor": 2.5,
    "tie_word_embeddings": False,
    "mask_token_id": 127,
    "pad_token_id": 120,
    "eos_token_id": 121,
}
LLADAMOE_CONFIG = {
    "model_type": "lladamoe",
    "architectures": ["LLaDAMoEModelLM"],
    "vocab_size": 128,
    "hidden_size": 32,
    "dense_intermediate_size": 64,
    "expert_intermediate_size": 16,
    "shared_expert_intermediate_size": 24,
    "num_hidden_layers": 3,
    "moe_layer_freq": [0, 1, 1],
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "partial_rotary_factor": 0.5,
    "qk_layernorm": True,
    "attention_bias": False,
    "rms_norm_eps": 1e-6,
    "rope_theta": 50000.0,
    "max_position_embeddings": 64,
    "num_experts": 8,
    "num_experts_per_tok": 3,
    "moe_router_enable_expert_bias": True,
    "moe_router_score_function": "softmax",
    "norm_topk_prob": False,
    "routed_scaling_factor": 1,
    "tie_word_embeddings": False,
    "mask_token_id": 127,
    "pad_token_id": 120,
    "eos_token_id": 121,
}
BLOCK = 4  # LLaDA2 block size in case (b); the canvas is 12 columns = 3 blocks
GEN_CASES = [dict(steps=8, gen_length=8, block_length=4), dict(steps=8, gen_length=8, block_length=8, temperature=0.7)]


def inputs(seed: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 12 ids, the last 4 masked (a sampler step); the second row left-padded by 3."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 8, (2, 12), generator=gen)
    ids[:, 8:] = vocab - 1
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :3] = 0
    ids[1, :3] = 120
    return ids, mask


def block_causal(n: int, block: int) -> torch.Tensor:
    """LLaDA2's sampler mask, built as its sampler builds it (additive 0 / -inf, bfloat16)."""
    blocks = n // block
    tri = torch.tril(torch.ones(blocks, blocks))
    return tri.repeat_interleave(block, dim=0).repeat_interleave(block, dim=1)[None, None].log().to(torch.bfloat16)


def as_loaded(ref: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`ref` in `dtype` as `from_pretrained(dtype=...)` leaves it: weights and persistent buffers (expert bias)
    cast, the rotary `inv_freq` buffer kept in float32 (it is computed at init, never loaded; a plain
    `.to(bfloat16)` would round it and shift every rotary angle)."""
    inv = {n: b.float().clone() for n, b in ref.named_buffers() if n.endswith("inv_freq")}
    ref = ref.to(dtype)
    for name, buf in inv.items():
        owner, _, leaf = name.rpartition(".")
        setattr(ref.get_submodule(owner), leaf, buf)
    return ref


def _ref_llada2(folder: str, pkg: str, mod: str, cfg_mod: str, weights: dict) -> torch.nn.Module:
    modeling = import_ref(folder, pkg, mod)
    config = import_ref(folder, pkg, cfg_mod).LLaDA2MoeConfig(
        **{k: v for k, v in LLADA2_CONFIG.items() if k not in ("model_type", "architectures")},
        attn_implementation="sdpa",
    )
    ref = modeling.LLaDA2MoeModelLM(config).eval()
    if weights:
        ref.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return ref


def llada2_logits(ref: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype) -> dict:
    ref = as_loaded(ref, dtype)
    n = ids.shape[1]
    bc = block_causal(n, BLOCK)
    bc = bc if dtype == torch.bfloat16 else bc.to(dtype)  # float32 SDPA needs a float32 additive mask
    pos = torch.arange(n)[None]
    keep = mask.bool()[:, None, None, :].expand(-1, 1, n, n)
    pad_pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    end = 2 * BLOCK
    with torch.no_grad():
        return {
            "full": ref(input_ids=ids).logits,
            "block": ref(input_ids=ids, attention_mask=bc, position_ids=pos).logits,
            "window": ref(
                input_ids=ids[:, :end], attention_mask=bc[:, :, :end, :end], position_ids=pos[:, :end]
            ).logits,
            "padded": ref(input_ids=ids, attention_mask=keep, position_ids=pad_pos).logits,
            "padded_block": ref(input_ids=ids, attention_mask=keep & (bc == 0), position_ids=pad_pos).logits,
        }


def make_llada2(folder: str, folder21: str) -> dict[str, torch.Tensor]:
    ref = _ref_llada2(folder, "llada2", "modeling_llada2_moe", "configuration_llada2_moe", {})
    weights = seeded_weights(ref, 0)
    ref = _ref_llada2(folder, "llada2", "modeling_llada2_moe", "configuration_llada2_moe", weights)
    ref21 = _ref_llada2(folder21, "llada21", "modeling_llada21_moe", "configuration_llada21_moe", weights)
    ids, mask = inputs(1, LLADA2_CONFIG["vocab_size"])
    out: dict[str, torch.Tensor] = {**weights, "__input_ids": ids, "__attention_mask": mask}
    for tag, dtype in (("", torch.float32), ("bf16_", torch.bfloat16)):
        for k, v in llada2_logits(ref, ids, mask, dtype).items():
            out[f"__{tag}{k}"] = v.float()
        out[f"__{tag}llada21_block"] = llada2_logits(ref21, ids, mask, dtype)["block"].float()
    return out


def _ref_lladamoe(folder: str, weights: dict) -> torch.nn.Module:
    modeling = import_ref(folder, "lladamoe", "modeling_lladamoe")
    config = import_ref(folder, "lladamoe", "configuration_lladamoe").LLaDAMoEConfig(
        **{k: v for k, v in LLADAMOE_CONFIG.items() if k not in ("model_type", "architectures")},
        attn_implementation="sdpa",
    )
    ref = modeling.LLaDAMoEModelLM(config).eval()
    if weights:
        ref.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return ref


def make_lladamoe(folder: str, generate_py: str) -> dict[str, torch.Tensor]:
    weights = seeded_weights(_ref_lladamoe(folder, {}), 0)
    ref = _ref_lladamoe(folder, weights)
    ids, mask = inputs(1, LLADAMOE_CONFIG["vocab_size"])
    out: dict[str, torch.Tensor] = {**weights, "__input_ids": ids, "__attention_mask": mask}
    for tag, dtype in (("", torch.float32), ("bf16_", torch.bfloat16)):
        ref = as_loaded(ref, dtype)
        with torch.no_grad():
            out[f"__{tag}full"] = ref(input_ids=ids).logits.float()
            out[f"__{tag}padded"] = ref(input_ids=ids, attention_mask=mask).logits.float()
    ref = as_loaded(ref, torch.float32)
    spec = importlib.util.spec_from_file_location("llada_generate_ref", generate_py)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    prompt = ids[:, :6]
    for i, case in enumerate(GEN_CASES):
        torch.manual_seed(2000 + i)
        out[f"__gen_{i}"] = gen.generate(ref, prompt, mask_id=127, **case)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llada2-ref", required=True)
    ap.add_argument("--llada21-ref", required=True)
    ap.add_argument("--lladamoe-ref", required=True)
    ap.add_argument("--llada-generate", required=True, help="ML-GSAI/LLaDA generate.py")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
    args = ap.parse_args()
    out = Path(args.out)
    jobs = [
        ("llada2", lambda: make_llada2(args.llada2_ref, args.llada21_ref), LLADA2_CONFIG),
        ("lladamoe", lambda: make_lladamoe(args.lladamoe_ref, args.llada_generate), LLADAMOE_CONFIG),
    ]
    for name, make, config in jobs:
        tensors = {k: v.contiguous() for k, v in make().items()}
        path = out / f"{name}_golden.safetensors"
        meta = {"config": json.dumps(config), "source": f"{name}: ZHZisZZ/dllm modeling code, transformers 4.x"}
        if name == "lladamoe":
            meta["gen_cases"] = json.dumps(GEN_CASES)
        save_file(tensors, str(path), metadata=meta)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
