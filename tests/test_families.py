"""Native families: hub key names, reference-equal logits (golden fixtures), sites, detection."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from mdm_lens.families import FAMILIES, detect_family, family_module
from mdm_lens.families import llada as llada_fam
from mdm_lens.hook_points import HookPoint
from mdm_lens.loading import build_random_model
from mdm_lens.testing import hub_key_names, tiny_config

FIXTURES = Path(__file__).parent / "fixtures"

# config.json of GSAI-ML/LLaDA-8B-Instruct (the fields that shape the weights)
LLADA_8B = {
    "model_type": "llada",
    "architectures": ["LLaDAModelLM"],
    "d_model": 4096,
    "n_heads": 32,
    "n_kv_heads": 32,
    "n_layers": 32,
    "mlp_hidden_size": 12288,
    "vocab_size": 126464,
    "embedding_size": 126464,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "mask_token_id": 126336,
    "include_bias": False,
    "weight_tying": False,
    "block_type": "llama",
    "layer_norm_type": "rms",
}
# config.json of Dream-org/Dream-v0-Instruct-7B (Qwen2.5-7B shapes)
DREAM_7B = {
    "model_type": "Dream",
    "architectures": ["DreamModel"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "mask_token_id": 151666,
}

# Key name pattern of the hub checkpoints' model.safetensors.index.json: LLaDA-8B-Instruct lists 291 tensors =
# 3 top-level + 32 blocks x these 9; Dream-7B (Qwen2 naming in modeling_dream.py) 339 = 3 + 28 x 12.
LLADA_BLOCK = ["attn_norm", "attn_out", "ff_norm", "ff_out", "ff_proj", "k_proj", "q_proj", "up_proj", "v_proj"]
LLADA_TOP = ["model.transformer.ff_out.weight", "model.transformer.ln_f.weight", "model.transformer.wte.weight"]
DREAM_LAYER = [
    "input_layernorm.weight",
    "mlp.down_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "post_attention_layernorm.weight",
    "self_attn.k_proj.bias",
    "self_attn.k_proj.weight",
    "self_attn.o_proj.weight",
    "self_attn.q_proj.bias",
    "self_attn.q_proj.weight",
    "self_attn.v_proj.bias",
    "self_attn.v_proj.weight",
]
DREAM_TOP = ["lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"]


def _meta(config: dict) -> nn.Module:
    with torch.device("meta"):
        return family_module(detect_family(config)).build_model(config)


def test_llada_8b_keys_match_hub_index():
    keys = set(_meta(LLADA_8B).state_dict())
    want = set(LLADA_TOP) | {f"model.transformer.blocks.{i}.{n}.weight" for i in range(32) for n in LLADA_BLOCK}
    assert len(want) == 291
    assert keys == want
    shapes = {k: tuple(v.shape) for k, v in _meta(LLADA_8B).state_dict().items()}
    assert shapes["model.transformer.blocks.0.ff_proj.weight"] == (12288, 4096)
    assert shapes["model.transformer.ff_out.weight"] == (126464, 4096)


def test_dream_7b_keys_match_hub_naming():
    model = _meta(DREAM_7B)
    keys = set(model.state_dict())
    want = set(DREAM_TOP) | {f"model.layers.{i}.{n}" for i in range(28) for n in DREAM_LAYER}
    assert len(want) == 339 and keys == want
    assert tuple(model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape) == (512, 3584)
    assert set(hub_key_names("dream", model.cfg)) == want
    assert set(hub_key_names("llada", _meta(LLADA_8B).cfg)) == set(_meta(LLADA_8B).state_dict())


def test_hook_points_add_no_keys():
    model = build_random_model(tiny_config("llada"))
    assert any(isinstance(m, HookPoint) for m in model.modules())
    assert not any("hook" in k for k in model.state_dict())


def _golden(name: str):
    path = FIXTURES / f"{name}_golden.safetensors"
    with safe_open(str(path), "pt") as f:
        config = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    weights = {k: v.float() for k, v in tensors.items() if not k.startswith("__")}
    return config, weights, tensors


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_logits_equal_reference_golden(name):
    """Fixtures were produced by the hub's own modeling code (scripts/make_model_goldens.py)."""
    config, weights, t = _golden(name)
    model = family_module(detect_family(config)).build_model(config).eval()
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        plain = model(t["__input_ids"])
        padded = model(t["__input_ids"], attention_mask=t["__attention_mask"])
    assert plain.shape == t["__logits"].shape
    torch.testing.assert_close(plain, t["__logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, t["__logits_padded"], atol=1e-5, rtol=1e-5)
    # the padding really matters in the fixture (row 1 is left-padded), so the mask path is exercised
    assert (t["__logits"][1] - t["__logits_padded"][1]).abs().max() > 1e-2
    torch.testing.assert_close(t["__logits"][0], t["__logits_padded"][0], atol=1e-5, rtol=1e-5)


def test_llada_padding_hides_keys_only():
    """LLaDA masks padded keys only: tokens at padded positions cannot influence real positions."""
    model = build_random_model(tiny_config("llada", n_kv_heads=2))
    ids = torch.randint(0, 250, (1, 10))
    mask = torch.ones(1, 10, dtype=torch.long)
    mask[0, :3] = 0
    other = ids.clone()
    other[0, :3] = (ids[0, :3] + 7) % 250
    with torch.no_grad():
        a, b = model(ids, attention_mask=mask), model(other, attention_mask=mask)
        c = model(other)
    torch.testing.assert_close(a[:, 3:], b[:, 3:])
    assert (c[:, 3:] - a[:, 3:]).abs().max() > 1e-4


def test_dream_explicit_position_ids_win():
    model = build_random_model(tiny_config("dream"))
    ids = torch.randint(0, 250, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :2] = 0
    with torch.no_grad():
        auto = model(ids, attention_mask=mask)
        same = model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).masked_fill(mask == 0, 1))
        shifted = model(ids, attention_mask=mask, position_ids=torch.arange(8).expand(2, 8) + 5)
        reversed_ = model(ids, attention_mask=mask, position_ids=torch.arange(8).flip(0).expand(2, 8))
    torch.testing.assert_close(auto, same)
    torch.testing.assert_close(auto[1, 2:], shifted[1, 2:])  # RoPE is relative: a common shift is invisible
    assert (auto[1, 2:] - reversed_[1, 2:]).abs().max() > 1e-4


def _capture(model: nn.Module, sites, ids) -> dict[str, torch.Tensor]:
    got, handles = {}, []
    modules = dict(model.named_modules())
    for s in sites:
        mod = modules[s.module_path]
        if s.kind == "output":
            handles.append(mod.register_forward_hook(lambda m, a, o, n=s.name: got.update({n: o}) and None))
        else:
            handles.append(
                mod.register_forward_pre_hook(
                    lambda m, a, kw, n=s.name: got.update({n: a[0] if a else kw["hidden_states"]}), with_kwargs=True
                )
            )
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for h in handles:
            h.remove()
    return got


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sites_resolve_with_right_width(family):
    model = build_random_model(tiny_config(family))
    spec = FAMILIES[family]
    sites = spec.build_sites(model)
    n_layers = 1 + max(s.layer for s in sites if s.layer is not None)
    names = [s.name for s in sites]
    assert len(names) == len(set(names))
    moe = {s.layer for s in sites if s.role == "expert_indices"}  # MoE layers: routed experts, no single MLP
    for layer in range(n_layers):  # every family has the steering roles (mdm_lens.sites.LAYER_ROLES)
        for suffix in (
            "hook_resid_pre",
            "hook_attn_out",
            "hook_resid_mid",
            "mlp.hook_pre",
            "mlp.hook_pre_linear",
            "mlp.hook_post",
            "hook_mlp_out",
            "hook_resid_post",
        ):
            assert (f"blocks.{layer}.{suffix}" in names) != (layer in moe and suffix.startswith("mlp.hook_p"))
    modules = dict(model.named_modules())
    for s in sites:
        assert s.module_path in modules, s
        if s.linear is not None:
            assert isinstance(modules[s.linear], (nn.Linear, nn.Embedding)), s
    acts = _capture(model, sites, torch.randint(3, 250, (2, 12)))
    for s in sites:  # the sizes of Site.shape (ints) are the tensor's; width is its last size
        got = tuple(acts[s.name].shape)
        assert len(got) == len(s.shape) and all(g == w for g, w in zip(got, s.shape) if isinstance(w, int)), (s, got)
        assert s.width == (got[-1] if isinstance(s.shape[-1], int) else 0), (s.name, got, s.width)
    if spec.residual_writers is not None:
        for path in spec.residual_writers(model):
            assert isinstance(modules[path], (nn.Linear, nn.Embedding))
        mlp_writers = 0  # a dense MLP's down projection, or an MoE layer's routed + shared experts' ones
        for layer in range(n_layers):
            routed, shared = spec.moe_writers(model, layer) if layer in moe else ([""], [])
            mlp_writers += len(routed) + len(shared)
        assert len(spec.residual_writers(model)) == 1 + n_layers + mlp_writers


def test_site_tensors_are_what_they_claim():
    """resid_mid = resid_pre + attn_out; resid_post = resid_mid + mlp_out; mlp_post = silu(pre) * pre_linear."""
    for family in ("llada", "dream"):
        model = build_random_model(tiny_config(family))
        acts = _capture(model, FAMILIES[family].build_sites(model), torch.randint(0, 250, (1, 7)))
        b = "blocks.1."
        torch.testing.assert_close(acts[b + "hook_resid_mid"], acts[b + "hook_resid_pre"] + acts[b + "hook_attn_out"])
        torch.testing.assert_close(acts[b + "hook_resid_post"], acts[b + "hook_resid_mid"] + acts[b + "hook_mlp_out"])
        torch.testing.assert_close(
            acts[b + "mlp.hook_post"],
            torch.nn.functional.silu(acts[b + "mlp.hook_pre"]) * acts[b + "mlp.hook_pre_linear"],
        )
        torch.testing.assert_close(acts["blocks.0.hook_resid_pre"], acts["hook_embed"])


def test_detect_family_and_error():
    assert detect_family(tiny_config("llada")).name == "llada"
    assert detect_family({"model_type": "Dream"}).name == "dream"
    assert detect_family({"architectures": ["LLaDAModelLM"]}).name == "llada"
    assert detect_family({"model_type": "x", "architectures": ["DreamModel"]}).name == "dream"
    with pytest.raises(ValueError, match="Supported families: .*llada.*dream"):
        detect_family({"model_type": "bert", "architectures": ["BertModel"]})


def test_spec_fields():
    assert FAMILIES["llada"].default_mask_id == 126336 and not FAMILIES["llada"].logits_shift
    assert FAMILIES["dream"].default_mask_id == 151666 and FAMILIES["dream"].logits_shift
    assert FAMILIES["llada"].sampler == "llada" and FAMILIES["dream"].sampler == "dream"
    assert FAMILIES["llada"].recommended["remasking"] == "low_confidence"
    assert FAMILIES["dream"].recommended["alg"] == "entropy"


def test_unsupported_llada_variant_is_refused():
    with pytest.raises(NotImplementedError, match="block_type"):
        llada_fam.LLaDAConfig.from_dict({**tiny_config("llada"), "block_type": "sequential"})


def test_a_family_declared_in_one_file_loads_and_generates():
    """tests/fake_family.py fills in a FamilySpec; registered, it is detected from config.json, built, hooked
    (its mask id 0 kept), sampled with its own settings and length key, and the fast path refuses it by name."""
    import fake_family

    from mdm_lens import HookedMDM
    from mdm_lens.families import FAMILIES, register_family, tiny_config

    register_family(fake_family.SPEC)
    try:
        _generate_with_the_fake_family(HookedMDM.from_config(tiny_config("fake_mdm"), seed=0), fake_family.SPEC)
    finally:
        FAMILIES.pop("fake_mdm")
    with pytest.raises(ValueError, match="needs \\['generate'\\]"):
        register_family(replace(fake_family.SPEC, name="broken", generate=None))


def _generate_with_the_fake_family(model, spec):
    assert model.spec is spec and model.mask_id == 0
    assert model.sampler_settings()["answer_tokens"] == 6 and model.default_gen_length == 6
    seen = []
    ids = torch.tensor([[5, 6, 7]])
    with model.hooks({"blocks.0.hook_resid_post": lambda a, ctx: seen.append(ctx.step)}):
        out = model.generate(ids, chat=False, answer_tokens=4, steps=2)
    assert seen == [0, 1] and out.tokens.shape == (1, 4) and not bool((out.tokens == 0).any())
    assert out.decode_step.tolist() == [[0, 0, 1, 1]]
    with pytest.raises(ValueError, match="fake_mdm family does not declare"):
        model.generate(ids, chat=False, sampler="fast")
