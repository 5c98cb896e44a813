"""TL's weight surface on the families that landed after tl_circuits (LLaDA2 fused QKV, LLaDA-MoE, A2D) and on
MoE layers: every matrix is checked by recomputing the model's own hooked activations from it, so a wrong layout,
head order, GQA expansion or expert index fails."""

import pytest
import torch
import torch.nn.functional as F

from mdm_lens.testing import tiny_model

# (family, config overrides): biased q/k/v variants too, so a misplaced bias slice of LLaDA2's fused projection fails
ATTN_FAMILIES = [
    ("llada2", {}),
    ("llada2", {"use_qkv_bias": True}),
    ("lladamoe", {"attention_bias": True}),
    ("a2d_qwen3", {}),
    ("a2d_qwen2", {}),
    ("a2d_llama", {"attention_bias": True}),
]
MOE_FAMILIES = ["llada2", "lladamoe"]
# float32 matmuls in a different association order (einsum over heads vs one Linear): last-bit differences only
ATOL = 1e-5


def _cache(model, names):
    ids = torch.randint(0, 300, (2, 7), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(ids, names_filter=lambda n: any(n.endswith(s) for s in names))
    return cache


@pytest.fixture(scope="module", params=ATTN_FAMILIES, ids=lambda p: "-".join([p[0], *p[1]]))
def attn(request):
    family, overrides = request.param
    model = tiny_model(family, seed=1, **overrides)
    with torch.no_grad():  # random biases where the family has them, so a misplaced bias slice fails
        for name, p in model.model.named_parameters():
            if name.endswith("bias") and ("proj" in name or "query_key_value" in name or "dense" in name):
                p.normal_(0, 0.5)
    names = ("ln1.hook_out", "hook_q", "hook_k", "hook_v", "hook_pattern", "hook_z", "hook_attn_out")
    return family, model, _cache(model, names)


def _bias(model, name, layer):
    """The bias at `layer`, or 0 where the family has none (the property raises, as TL's does)."""
    try:
        return getattr(model, name)[layer]
    except AttributeError:
        return 0.0


def test_qkv_weights_recompute_hook_q_k_v(attn):
    """`ln1 @ W_Q + b_Q` is the model's own `hook_q` (before QK-norm and rotary), per head, kv heads for K/V."""
    family, model, cache = attn
    for layer in range(model.n_layers):
        x = cache[f"blocks.{layer}.ln1.hook_out"]
        for w, b, site in (("W_Q", "b_Q", "q"), ("W_K", "b_K", "k"), ("W_V", "b_V", "v")):
            weight = getattr(model, w)[layer]
            got = torch.einsum("bpd,hde->bphe", x, weight) + _bias(model, b, layer)
            torch.testing.assert_close(got, cache[f"blocks.{layer}.attn.hook_{site}"], atol=ATOL, rtol=0, msg=site)


def test_ov_weights_recompute_z_and_attn_out(attn):
    """z = pattern @ (v of kv head h // group), and sum_h z_h @ W_O[h] + b_O = attn_out: checks W_V's kv-head
    order, TL's GQA expansion (`OV`) and W_O's head layout together."""
    family, model, cache = attn
    group = model.cfg.n_heads // model.W_K.shape[1]
    assert group > 1  # the tiny configs are GQA, so the expansion is exercised
    for layer in range(model.n_layers):
        x = cache[f"blocks.{layer}.ln1.hook_out"]
        v = torch.einsum("bpd,hde->bphe", x, model.W_V[layer]) + _bias(model, "b_V", layer)
        v = v.repeat_interleave(group, dim=2)
        z = torch.einsum("bhqk,bkhe->bqhe", cache[f"blocks.{layer}.attn.hook_pattern"], v)
        torch.testing.assert_close(z, cache[f"blocks.{layer}.attn.hook_z"], atol=ATOL, rtol=0)
        out = torch.einsum("bphe,hed->bpd", z, model.W_O[layer]) + _bias(model, "b_O", layer)
        torch.testing.assert_close(out, cache[f"blocks.{layer}.hook_attn_out"], atol=ATOL, rtol=0)
        ov = model.OV[layer].AB  # [n_heads, d_model, d_model]: the same map, factored
        via_ov = torch.einsum("bhqk,bkd,hde->bqe", cache[f"blocks.{layer}.attn.hook_pattern"], x, ov)
        b_v = _bias(model, "b_V", layer)
        if isinstance(b_v, torch.Tensor):  # pattern rows sum to 1: the v bias adds sum_h b_V[h // group] @ W_O[h]
            via_ov = via_ov + torch.einsum("he,hed->d", b_v.repeat_interleave(group, dim=0), model.W_O[layer])
        torch.testing.assert_close(via_ov, out - _bias(model, "b_O", layer), atol=ATOL, rtol=0)


def test_block_view_module_is_the_decoder_layer(attn):
    family, model, _ = attn
    block = model.blocks[1].module
    assert block is model.model.get_submodule(model.site("blocks.1.hook_resid_pre").module_path.rsplit(".", 1)[0])
    assert torch.equal(model.blocks[1].attn.W_Q, model.W_Q[1])


@pytest.fixture(scope="module", params=MOE_FAMILIES)
def moe(request):
    model = tiny_model(request.param, seed=2)
    names = ("ln2.hook_out", "hook_expert_indices", "hook_expert_out", "hook_shared_out", "hook_mlp_out")
    return request.param, model, _cache(model, names)


def _swiglu(x, w_gate, w_in, w_out):
    return (F.silu(x @ w_gate) * (x @ w_in)) @ w_out


def test_expert_weights_recompute_hook_expert_out(moe):
    family, model, cache = moe
    layers = model.moe_layers
    assert layers and layers != list(range(model.n_layers))  # the tiny configs mix dense and MoE layers
    for layer in layers:
        x = cache[f"blocks.{layer}.ln2.hook_out"]
        idx, outs = cache[f"blocks.{layer}.mlp.hook_expert_indices"], cache[f"blocks.{layer}.mlp.hook_expert_out"]
        w = model.expert_weights(layer)
        n_exp, d_model = len(model.blocks[layer].mlp.experts), model.cfg.d_model
        assert w.W_in.shape[:2] == (n_exp, d_model) and w.W_out.shape[0] == n_exp and w.W_out.shape[2] == d_model
        for b, p, k in [(0, 0, 0), (0, 3, 1), (1, 6, 0), (1, 2, idx.shape[-1] - 1)]:
            e = int(idx[b, p, k])
            got = _swiglu(x[b, p], w.W_gate[e], w.W_in[e], w.W_out[e])
            torch.testing.assert_close(got, outs[b, p, k], atol=ATOL, rtol=0)
            one = model.blocks[layer].mlp.experts[e]  # TL's per-expert form: the same matrices
            assert torch.equal(one.W_in, w.W_in[e]) and torch.equal(one.W_gate, w.W_gate[e])
            assert torch.equal(one.W_out, w.W_out[e])
        # another expert's weights must not reproduce it (the check above would catch an index shift)
        e0 = int(idx[0, 0, 0])
        other = (e0 + 1) % n_exp
        assert not torch.allclose(_swiglu(x[0, 0], w.W_gate[other], w.W_in[other], w.W_out[other]), outs[0, 0, 0])


def test_shared_expert_weights_recompute_hook_shared_out(moe):
    family, model, cache = moe
    for layer in model.moe_layers:
        s = model.shared_expert_weights(layer)
        assert s is not None and model.blocks[layer].mlp.shared_experts is not None
        x = cache[f"blocks.{layer}.ln2.hook_out"]
        got = _swiglu(x, s.W_gate, s.W_in, s.W_out)
        torch.testing.assert_close(got, cache[f"blocks.{layer}.mlp.hook_shared_out"], atol=ATOL, rtol=0)
        router = model.blocks[layer].mlp.W_gate  # TL's MoE W_gate is the router
        assert router.shape == (model.cfg.d_model, len(model.blocks[layer].mlp.experts))


def test_dense_layers_keep_tl_mlp_weights(moe):
    family, model, cache = moe
    dense = [layer for layer in range(model.n_layers) if layer not in model.moe_layers]
    for layer in dense:
        mlp = model.blocks[layer].mlp
        x = cache[f"blocks.{layer}.ln2.hook_out"]
        got = _swiglu(x, mlp.W_gate, mlp.W_in, mlp.W_out)
        torch.testing.assert_close(got, cache[f"blocks.{layer}.hook_mlp_out"], atol=ATOL, rtol=0)
        with pytest.raises(TypeError, match=rf"layer {layer} .* dense MLP.*blocks\[{layer}\]\.mlp\.W_in"):
            model.expert_weights(layer)


@pytest.mark.parametrize("attr", ["W_in", "W_gate", "W_out"])
def test_plain_mlp_weights_on_moe_layers_raise_naming_the_accessor(moe, attr):
    family, model, _ = moe
    layer = model.moe_layers[0]
    with pytest.raises(TypeError, match=rf"{attr}: layer {layer} .* mixture of experts.*expert_weights\({layer}\)"):
        getattr(model, attr)
    if attr != "W_gate":  # on the per-layer view W_gate is TL's MoE router
        with pytest.raises(TypeError, match=rf"layer {layer} .* mixture of experts.*experts\[e\]\.{attr}"):
            getattr(model.blocks[layer].mlp, attr)
    with pytest.raises(IndexError, match="out of range"):
        model.expert_weights(model.n_layers)
