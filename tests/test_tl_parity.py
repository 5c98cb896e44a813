"""TransformerLens 4.3 parity: hook names, tensors, ActivationCache methods and get_act_name, against goldens
written by TL's own TransformerBridge over the same tiny weights (scripts/make_tl_goldens.py)."""

import json

import pytest
import torch
from safetensors import safe_open

from mdm_lens import HookedMDM, get_act_name
from mdm_lens.activation_cache import ActivationCache
from mdm_lens.families import detect_family
from mdm_lens.loading import build_random_model
from mdm_lens.testing import build_test_tokenizer, tiny_config

FAMILIES = ["llada", "dream"]
ATOL = 2e-6


def _golden(family):
    with safe_open(f"tests/fixtures/tl_goldens_{family}.safetensors", "pt") as f:
        return json.loads(f.metadata()["meta"]), {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module", params=FAMILIES)
def run(request):
    """(family, meta, tensors, model, logits, full cache) on the fixture's weights and input."""
    family = request.param
    meta, g = _golden(family)
    cfg = tiny_config(family)
    inner = build_random_model(cfg, seed=0)
    weights = {k[len("weights.") :]: v for k, v in g.items() if k.startswith("weights.")}
    missing, unexpected = inner.load_state_dict(weights, strict=False)
    assert not unexpected and len(weights) == 5
    model = HookedMDM(inner, detect_family(cfg), build_test_tokenizer(style=family, vocab_size=cfg["vocab_size"]), cfg)
    mask = g["attention_mask"] if meta["padded"] else None
    logits, cache = model.run_with_cache(g["input_ids"], attention_mask=mask)
    return family, meta, g, model, logits, cache


def _expected(meta, g, name):
    return g["cache." + meta["stored_as"][name]]


def test_logits_equal_the_bridge(run):
    family, meta, g, model, logits, cache = run
    assert (logits - g["logits"]).abs().max() < 1e-6


def test_hook_names_are_exactly_tls(run):
    """Every name TL's bridge caches exists (LLaDA 110, Dream 97), and the only others are mdm-lens's own,
    listed here: hook_logits, and on Dream the LLaDA-adapter names of tensors Dream has too (TL's Dream adapter
    leaves them out)."""
    family, meta, g, model, logits, cache = run
    tl = set(meta["names"])
    assert len(tl) == {"llada": 110, "dream": 97}[family]
    ours = set(model.all_hook_names)
    assert len(ours) == len(model.all_hook_names)  # no name belongs to two sites
    assert tl - ours == set()
    # hook_result: TL's bridge caches only the hooks that fire, and it fires only under use_attn_result (issue 25)
    extra = {"hook_logits"} | {f"blocks.{l}.attn.hook_result" for l in range(model.n_layers)}
    if family == "dream":
        extra |= {
            f"blocks.{l}.{s}"
            for l in range(model.n_layers)
            for s in (
                "hook_attn_in",
                "hook_q_input",
                "hook_k_input",
                "hook_v_input",
                "mlp.act.hook_in",
                "mlp.act.hook_out",
            )
        }
    assert ours - tl == extra
    every = set(model.hook_names) - {f"blocks.{l}.attn.hook_result" for l in range(model.n_layers)}
    assert set(cache) == every >= {model.site(n).name for n in tl}  # run_with_cache: every site but on-demand ones


def test_every_covered_name_carries_tls_tensor(run):
    family, meta, g, model, logits, cache = run
    checked = 0
    for name in meta["names"]:
        if meta["attn_scores_equals_pattern"] and name.endswith("hook_attn_scores"):
            continue  # TL's Dream bridge fires scores after softmax: tests/test_attention_hooks.py
        exp, got = _expected(meta, g, name), cache[name].float()
        assert list(got.shape) == meta["shapes"][name], name
        torch.testing.assert_close(got, exp, atol=ATOL, rtol=0, msg=name)
        checked += 1
    assert checked == {"llada": 110, "dream": 95}[family]


def test_norm_hooks_are_tls(run):
    """hook_normalized is x / scale WITHOUT the weight (the clash: mdm-lens once called the weighted output so);
    ln_final.hook_out is the weighted one. The fixture's norm weights are not 1, so they differ."""
    family, meta, g, model, logits, cache = run
    x = cache["ln_final.hook_in"].float()
    scale = x.pow(2).mean(-1, keepdim=True).add(model.cfg.eps).sqrt()
    torch.testing.assert_close(cache["scale"], scale, atol=1e-6, rtol=0)
    torch.testing.assert_close(cache["normalized"], x / scale, atol=1e-6, rtol=0)
    w = model.model.get_submodule(model.site(get_act_name("ln_final")).module_path).weight
    torch.testing.assert_close(cache["ln_final.hook_out"], w * x / scale, atol=1e-6, rtol=0)
    assert not torch.allclose(cache["ln_final.hook_out"], cache["ln_final.hook_normalized"], atol=1e-3)


def test_activation_cache_methods_equal_tls(run):
    family, meta, g, model, logits, cache = run
    raw = cache.accumulated_resid(layer=None, incl_mid=True, apply_ln=False)
    dec = cache.decompose_resid(apply_ln=False)
    target = meta["target_token"]
    calls = {
        "accumulated_resid": lambda: cache.accumulated_resid(
            layer=None, incl_mid=True, apply_ln=True, return_labels=True
        ),
        "accumulated_resid_raw": lambda: cache.accumulated_resid(layer=None, incl_mid=True, return_labels=True),
        "accumulated_resid_l1_ln": lambda: cache.accumulated_resid(
            layer=1, incl_mid=True, apply_ln=True, return_labels=True
        ),
        "accumulated_resid_l1_mlp_input": lambda: cache.accumulated_resid(
            layer=1, mlp_input=True, apply_ln=True, return_labels=True
        ),
        "accumulated_resid_pos_last": lambda: cache.accumulated_resid(apply_ln=True, pos_slice=-1, return_labels=True),
        "decompose_resid": lambda: cache.decompose_resid(apply_ln=True, return_labels=True),
        "decompose_resid_raw": lambda: cache.decompose_resid(apply_ln=False, return_labels=True),
        "decompose_resid_l1_mlp_input": lambda: cache.decompose_resid(
            layer=1, mlp_input=True, apply_ln=True, return_labels=True
        ),
        "apply_ln_to_stack_final": lambda: cache.apply_ln_to_stack(raw, layer=None),
        "apply_ln_to_stack_final_recompute": lambda: cache.apply_ln_to_stack(raw, layer=None, recompute_ln=True),
        "apply_ln_to_stack_l1_ln2": lambda: cache.apply_ln_to_stack(raw, layer=1, mlp_input=True),
        "apply_ln_to_stack_final_pos_last": lambda: cache.apply_ln_to_stack(
            raw[:, :, -1:], layer=None, pos_slice=slice(-1, None)
        ),
        "logit_attrs_accumulated": lambda: cache.logit_attrs(raw, tokens=target),
        "stack_activation_resid_post": lambda: cache.stack_activation("resid_post"),
        "logit_attrs_decomposed": lambda: cache.logit_attrs(dec, tokens=target),
        "logit_attrs_decomposed_diff": lambda: cache.logit_attrs(dec, tokens=target, incorrect_tokens=target - 1),
    }
    for key, call in calls.items():
        out = call()
        got, labels = out if isinstance(out, tuple) else (out, None)
        torch.testing.assert_close(got.float(), g["acache." + key], atol=5e-6, rtol=1e-5, msg=key)
        assert labels == meta["labels"].get(key), key
    # the decomposition sums to the stream it decomposes (TL: exactly)
    torch.testing.assert_close(dec.sum(0), cache["resid_post", -1], atol=1e-5, rtol=0)


def test_cache_keys_resolve_as_tls(run):
    family, meta, g, model, logits, cache = run
    keys = {
        "resid_post,1": ("resid_post", 1),
        "resid_post,-1": ("resid_post", -1),
        "scale,1,ln1": ("scale", 1, "ln1"),
        "scale": "scale",
        "hook_embed": "hook_embed",
    }
    for label, key in keys.items():
        exp = _expected(meta, g, meta["getitem"][label])
        torch.testing.assert_close(cache[key].float(), exp, atol=ATOL, rtol=0, msg=label)
    with pytest.raises(KeyError, match="blocks.6.attn.hook_k"):
        cache["k6"]  # TL: KeyError too (no layer 6)
    assert ("resid_post", 1) in cache and "blocks.1.hook_out" in cache and "nonsense" not in cache
    assert cache["blocks.0.mlp.hook_out"] is cache["mlp_out", 0] is cache["blocks.0.mlp.out.hook_out"]


def test_get_act_name_equals_tls():
    meta, _ = _golden("llada")
    for args, expected in meta["get_act_name"].items():
        assert get_act_name(*json.loads(args)) == expected, args
    assert get_act_name("mlp_pre_linear", 2) == "blocks.2.mlp.hook_pre_linear"  # mdm-lens's own roles
    assert get_act_name("ln1_scale", 0) == "blocks.0.ln1.hook_scale" and get_act_name("ln_final") == "ln_final.hook_out"
    with pytest.raises(ValueError, match="needs a layer"):
        get_act_name("resid_post")


def test_cfg_and_weights_are_tls(run):
    family, meta, g, model, logits, cache = run
    for k in (
        "n_layers",
        "d_model",
        "n_heads",
        "d_head",
        "d_mlp",
        "d_vocab",
        "d_vocab_out",
        "n_ctx",
        "eps",
        "n_key_value_heads",
        "normalization_type",
        "final_rms",
        "positional_embedding_type",
        "act_fn",
        "default_prepend_bos",
        "gated_mlp",
    ):
        assert getattr(model.cfg, k) == meta["cfg"][k], k
    assert model.cfg.family == family
    emb = model.model.get_input_embeddings().weight
    assert model.W_E is emb and model.W_U.shape == (64, 320) and meta["W_U_is_unembed_weight_T"]
    torch.testing.assert_close(cache["hook_unembed"], cache["unembed.hook_in"] @ model.W_U)
    d = model.cfg
    assert model.W_O.shape == (d.n_layers, d.n_heads, d.d_head, d.d_model)
    assert model.W_in.shape == model.W_gate.shape == (d.n_layers, d.d_model, d.d_mlp)
    torch.testing.assert_close(cache["blocks.1.hook_mlp_out"], cache["post", 1] @ model.W_out[1])


def test_remove_batch_dim_and_to(run):
    family, meta, g, model, logits, cache = run
    _, one = model.run_with_cache(g["input_ids"][:1], names_filter=["hook_embed", "blocks.1.hook_resid_post"])
    assert one.remove_batch_dim() is one and one["hook_embed"].shape == (8, 64) and not one.has_batch_dim
    assert one.to("cpu") is one
    with pytest.raises(ValueError, match="batch of 2"):
        ActivationCache(dict(cache), model=model).remove_batch_dim()


def test_names_filter_and_aliases(run):
    family, meta, g, model, logits, cache = run
    ids = g["input_ids"]
    _, c = model.run_with_cache(ids, names_filter="hook_embed")
    assert list(c) == ["hook_embed"] and "embed.hook_out" in c
    _, c = model.run_with_cache(ids, names_filter=["blocks.0.mlp.hook_out", "blocks.0.hook_mlp_out"])
    assert list(c) == ["blocks.0.hook_mlp_out"]  # one site, hooked once, known by both names
    _, c = model.run_with_cache(ids, names_filter=lambda n: n.endswith("ln2.hook_scale"))
    assert sorted(c) == ["blocks.0.ln2.hook_scale", "blocks.1.ln2.hook_scale"]
    with pytest.raises(KeyError, match="closest"):
        model.run_with_cache(ids, names_filter=["blocks.0.hook_mlp_outt"])


def test_run_with_hooks_tl_style(run):
    family, meta, g, model, logits, cache = run
    ids, mask = g["input_ids"], (g["attention_mask"] if meta["padded"] else None)
    logits = model(ids, attention_mask=mask)  # unhooked (SDPA); the fixture's cached run took the eager path
    seen = []

    def zero(act, hook):
        seen.append((hook.name, hook.layer(), hook.step))
        return torch.zeros_like(act)

    out = model.run_with_hooks(ids, fwd_hooks=[("blocks.1.ln1.hook_normalized", zero)], attention_mask=mask)
    assert seen == [("blocks.1.ln1.hook_normalized", 1, None)]
    assert not torch.allclose(out, logits)
    noop = model.run_with_hooks(
        ids, fwd_hooks=[(lambda n: n.endswith("hook_scale"), lambda a, hook: None)], attention_mask=mask
    )
    assert torch.equal(noop, logits)  # the reference multiply is kept when nothing is edited
    # an edited scale divides (TL's x / scale): doubling every ln_final scale halves the normalized stream
    _, c = model.run_with_cache(ids, names_filter=["ln_final.hook_normalized"], attention_mask=mask)
    halved = []
    with model.hooks(
        {
            "ln_final.hook_scale": lambda a, ctx: a * 2,
            "ln_final.hook_normalized": lambda a, ctx: halved.append(a) or None,
        }
    ):
        model(ids, attention_mask=mask)
    torch.testing.assert_close(halved[0], c["normalized"] / 2)
    with pytest.raises(NotImplementedError):
        model.run_with_hooks(ids, bwd_hooks=[("hook_embed", zero)])
    # an mdm-lens fn(act, ctx) works too: the hook object reads like the step context
    sites = []
    same = model.run_with_hooks(
        ids, fwd_hooks=[("blocks.0.mlp.hook_out", lambda a, ctx: sites.append(ctx.site))], attention_mask=mask
    )
    assert sites == ["blocks.0.mlp.hook_out"] and torch.equal(same, logits)


def test_text_conveniences(run):
    family, meta, g, model, logits, cache = run
    toks = model.to_tokens(["hello world", "hello"], padding_side="right")
    assert toks.shape == (2, 2) and toks[1, 1] == model.tokenizer.pad_token_id
    assert model.to_str_tokens("hello world") == ["hello", "world"] == model.to_str_tokens(toks[0])
    assert model.to_string(toks[0]) == model.tokenizer.decode(toks[0].tolist())
    assert model.to_single_token("hello") == int(toks[0, 0])
    l_text, _ = model.run_with_cache("hello world", names_filter=["blocks.0.hook_resid_post"])
    l_ids, _ = model.run_with_cache(toks[:1], names_filter=["blocks.0.hook_resid_post"])
    assert torch.equal(l_text, l_ids) and torch.equal(model("hello world"), l_ids)


def test_step_cache_at_step_is_an_activation_cache(run):
    family, meta, g, model, logits, cache = run
    roles = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "ln1_scale", "ln2_scale"]
    sites = [get_act_name(r, l) for l in range(model.n_layers) for r in roles] + [
        "hook_embed",
        "ln_final.hook_scale",
        "embed.hook_in",
    ]
    gen = {"llada": dict(gen_length=4, steps=2, block_length=4), "dream": dict(max_new_tokens=4, steps=2)}[family]
    with model.cache_steps(sites, steps=[1]) as steps:
        model.generate(["hello"], chat=False, **gen)
    assert steps.steps == [1]
    at = steps.at(1)
    assert isinstance(at, ActivationCache) and at["blocks.1.hook_out"] is steps["blocks.1.hook_resid_post", 1]
    # that step's cache answers as a plain forward over the step's canvas does
    _, ref = model.run_with_cache(at["embed.hook_in"], names_filter=sites)
    for method in ("accumulated_resid", "decompose_resid"):
        got, labels = getattr(at, method)(apply_ln=True, return_labels=True)
        exp, exp_labels = getattr(ref, method)(apply_ln=True, return_labels=True)
        assert labels == exp_labels
        torch.testing.assert_close(got, exp, atol=1e-6, rtol=0)
    with pytest.raises(KeyError, match="not cached"):  # ln2 normalized was not chosen
        at["normalized", 0, "ln2"]
    with pytest.raises(KeyError, match="nothing cached at step 0"):
        steps.at(0)
    assert steps.at(1, model=None).model is model


def test_head_results_equal_tls_once_z_is_cached(run):
    """stack_head_results / get_full_resid_decomposition / stack_activation("pattern") read hook_z / hook_pattern:
    until the attention internals exist (issue 11, H11b) they refuse naming the missing site; then they equal TL."""
    family, meta, g, model, logits, cache = run
    if "blocks.0.attn.hook_z" not in model.all_hook_names:
        with pytest.raises(KeyError, match="hook_z"):
            cache.stack_head_results()
        with pytest.raises(KeyError, match="hook_pattern"):
            cache.stack_activation("pattern")
        return
    calls = {
        "stack_head_results": lambda: cache.stack_head_results(layer=-1, return_labels=True),
        "get_full_resid_decomposition": lambda: cache.get_full_resid_decomposition(
            expand_neurons=False, return_labels=True
        ),
        "stack_activation_pattern": lambda: cache.stack_activation("pattern"),
    }
    for key, call in calls.items():
        out = call()
        got, labels = out if isinstance(out, tuple) else (out, None)
        torch.testing.assert_close(got.float(), g["acache." + key], atol=5e-6, rtol=1e-5, msg=key)
        assert labels == meta["labels"].get(key), key
