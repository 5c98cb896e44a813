"""The tiny LLaDA2 model and the sampler cases of tests/fixtures/llada2_sampler_goldens.safetensors (shared by
scripts/make_llada2_sampler_goldens.py, which runs the original code on them, and tests/test_llada2_sampling.py)."""

from __future__ import annotations

MASK = 127
EOS = 125  # a token the tiny model decodes in its second block: the EOS stops run
NEVER = 3  # an EOS id it never decodes
LM_HEAD_SCALE = 8.0  # peaky logits, so that some columns pass the threshold

# LLaDA2.0-mini's config.json field set at tiny sizes: MoE with grouped routing and a shared expert, QK-norm,
# partial rotary, first layer dense.
CONFIG = {
    "model_type": "llada2_moe",
    "architectures": ["LLaDA2MoeModelLM"],
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "hidden_act": "silu",
    "use_qkv_bias": False,
    "use_bias": False,
    "use_qk_norm": True,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "max_position_embeddings": 256,
    "rope_theta": 600000.0,
    "partial_rotary_factor": 0.5,
    "num_experts": 8,
    "num_shared_experts": 1,
    "num_experts_per_tok": 2,
    "n_group": 4,
    "topk_group": 2,
    "routed_scaling_factor": 2.5,
    "moe_intermediate_size": 16,
    "first_k_dense_replace": 1,
    "embedding_dropout": 0.0,
    "attention_dropout": 0.0,
    "output_dropout": 0.0,
    "pad_token_id": 0,
    "eos_token_id": EOS,
    "mask_token_id": MASK,
}


def _case(name: str, prompt: list[int], dtype: str = "float32", seed: int = 0, **settings) -> dict:
    base = {"gen_length": 24, "block_length": 8, "steps": 8, "threshold": 0.95, "eos_id": NEVER, "mask_id": MASK}
    return {"name": name, "prompt": [prompt], "dtype": dtype, "seed": seed, "settings": {**base, **settings}}


P5, P8 = [5, 9, 17, 33, 40], [11, 4, 60, 23, 7, 90, 31, 2]
CASES: list[dict] = [
    _case("greedy_default", P5),
    _case("greedy_threshold_0.7", P5, threshold=0.7),
    _case("aligned_prompt_steps4", P8, gen_length=16, steps=4, threshold=0.8),
    _case("no_threshold_steps12", P5, steps=12, threshold=1.0),
    _case("minimal_topk_caps", P8, gen_length=16, steps=8, minimal_topk=4, threshold=0.9),
    _case("sample_topk_topp", P5, seed=7, temperature=0.7, top_k=20, top_p=0.9, threshold=0.8),
    _case("sample_t1_topp", P8, seed=11, temperature=1.0, top_p=0.8, threshold=0.6),
    _case("eos_block_stop", P5, eos_id=EOS, threshold=0.7),
    _case("eos_early_stop", P5, eos_id=EOS, threshold=0.7, eos_early_stop=True),
    _case("bf16_greedy", P5, dtype="bfloat16", threshold=0.7),
    _case("bf16_sample", P8, dtype="bfloat16", seed=3, temperature=0.8, top_k=30, threshold=0.7),
    _case("bf16_eos_early_stop", P5, dtype="bfloat16", eos_id=EOS, eos_early_stop=True, threshold=0.7),
    # EOS = 97 here (the tiny model's most frequent token): the early stop returns mid-block, 4 forwards of 8
    _case("eos_early_stop_midblock", P8, eos_id=97, threshold=1.0, eos_early_stop=True),
    _case("eos_block_stop_97", P8, eos_id=97, threshold=1.0),
]


def _case21(name: str, prompt: list[int], dtype: str = "float32", seed: int = 0, **settings) -> dict:
    """LLaDA2.1's generate (editing): `steps` / `minimal_topk` are passed to the reference, which ignores them."""
    base = {"gen_length": 24, "block_length": 8, "steps": 8, "minimal_topk": 1, "threshold": 0.95}
    base |= {"editing_threshold": 0.9, "max_post_steps": 16, "num_to_transfer": 1, "eos_id": NEVER, "mask_id": MASK}
    return {"name": name, "prompt": [prompt], "dtype": dtype, "seed": seed, "settings": {**base, **settings}}


CASES21: list[dict] = [
    _case21("greedy_edit_0.5", P5, threshold=0.7, editing_threshold=0.5, max_post_steps=4),
    _case21("greedy_transfer2_post3", P8, threshold=0.8, num_to_transfer=2, editing_threshold=0.6, max_post_steps=3),
    _case21(
        "sample_edit", P5, seed=5, temperature=0.8, top_k=30, threshold=0.6, editing_threshold=0.4, max_post_steps=4
    ),
    _case21(
        "eos_early_stop", P5, eos_id=97, threshold=0.7, editing_threshold=0.5, max_post_steps=4, eos_early_stop=True
    ),
    _case21("bf16_edit", P8, dtype="bfloat16", threshold=0.7, editing_threshold=0.5),
]


def load_golden(cases: str = "cases"):
    """-> (tensors, per-case metadata) of tests/fixtures/llada2_sampler_goldens.safetensors (`cases`: "cases" for
    LLaDA2.0's, "cases21" for LLaDA2.1's)."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    with safe_open(str(Path(__file__).parent / "fixtures" / "llada2_sampler_goldens.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert json.loads(meta["config"]) == CONFIG, "the fixture was made from another config: rerun the script"
    return tensors, json.loads(meta[cases])


def native_model(tensors):
    """The native LLaDA2 `HookedMDM` holding the fixture's weights (the ones the original code ran), float32."""
    from mdm_lens import HookedMDM

    model = HookedMDM.from_config(CONFIG, seed=0)
    model.model.load_state_dict({k[2:]: v.float() for k, v in tensors.items() if k.startswith("w.")})
    return model.eval()
