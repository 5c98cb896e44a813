"""TL's live `blocks.{l}.attn.hook_result` (issue 25, point 3): per-head attention outputs `[batch, pos, head,
d_model]`, computed only while hooked (or under `set_use_attn_result`), equal to TransformerLens 4.3's on the same
weights (goldens by scripts/make_tl_circuit_goldens.py), and editable: the forward's attn_out is the sum of the
edited heads plus the bias."""

import pytest
import torch

from tests.test_tl_circuits import ATOL, run  # noqa: F401 - the fixture: (family, meta, goldens, model)


def test_hook_result_is_tls_when_cached(run):  # noqa: F811
    family, meta, g, model = run
    names = [f"blocks.{l}.attn.hook_result" for l in range(model.n_layers)] + [
        f"blocks.{l}.hook_attn_out" for l in range(model.n_layers)
    ]
    logits, cache = model.run_with_cache(g["input_ids"], names_filter=names)
    torch.testing.assert_close(logits, g["logits"], atol=ATOL, rtol=0)  # the per-head route changes nothing
    for layer in range(model.n_layers):
        res = cache["result", layer]
        assert res.shape == (*g["input_ids"].shape, model.cfg.n_heads, model.cfg.d_model)
        torch.testing.assert_close(res, g[f"result.blocks.{layer}.attn.hook_result"], atol=ATOL, rtol=0)
        # summing n_heads float32 terms in another order than the matmul does: ~1e-7 apart
        torch.testing.assert_close(res.sum(-2), cache["attn_out", layer], atol=1e-6, rtol=0)


def test_hook_result_is_off_by_default(run):  # noqa: F811
    family, meta, g, model = run
    _, cache = model.run_with_cache(g["input_ids"])
    assert "blocks.0.attn.hook_result" in model.hook_names
    assert not any(k.endswith("hook_result") for k in cache)  # TL: only under use_attn_result
    fired = []
    with model.hooks({"blocks.0.hook_attn_out": lambda a, ctx: None}):
        model(g["input_ids"])
    model.set_use_attn_result(True)
    try:
        assert model.use_attn_result
        _, cache = model.run_with_cache(g["input_ids"])
        assert sum(k.endswith("attn.hook_result") for k in cache) == model.n_layers
        with model.hooks({"blocks.1.attn.hook_result": lambda a, ctx: fired.append(a.shape)}):
            model(g["input_ids"])
    finally:
        model.set_use_attn_result(False)
    assert fired and not model.use_attn_result
    with pytest.raises(TypeError, match="True or False"):
        model.set_use_attn_result("yes")


def test_zeroing_a_heads_result_equals_ablating_its_z(run):  # noqa: F811
    family, meta, g, model = run
    ids = g["input_ids"]

    def zero_head(act, ctx):
        act = act.clone()
        act[:, :, 1] = 0.0
        return act

    with model.hooks({"blocks.0.attn.hook_result": zero_head}):
        via_result = model(ids)
    with model.hooks({"blocks.0.attn.hook_z": zero_head}):
        via_z = model(ids)
    torch.testing.assert_close(via_result, via_z, atol=1e-5, rtol=0)  # float32, heads summed in two orders
    torch.testing.assert_close(via_z, g["hooks.added"], atol=ATOL, rtol=0)  # TL's own head-1 ablation
    assert (via_result - model(ids)).abs().max() > 1e-3  # the edit reached the logits
    assert not model.hooks_attached
