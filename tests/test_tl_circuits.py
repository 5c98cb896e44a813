"""TransformerLens's circuit surface (issue 25, point 4) against TL 4.3's own bridge on the same weights: goldens by
scripts/make_tl_circuit_goldens.py (TL's bridge over the transformers-native twin of each family, bidirectional)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mdm_lens import HookedMDM
from mdm_lens.factored_matrix import FactoredMatrix
from mdm_lens.families import detect_family
from mdm_lens.loading import build_random_model
from mdm_lens.testing import build_test_tokenizer, tiny_config

FIX = Path(__file__).parent / "fixtures"
ATOL = 2e-6  # float32 forwards through different kernels (eager softmax vs ours): last-bit differences only


def _golden(family):
    path = FIX / f"tl_circuit_goldens_{family}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    return meta, load_file(str(path))


@pytest.fixture(scope="module", params=["llada", "dream"])
def run(request):
    family = request.param
    meta, g = _golden(family)
    cfg = tiny_config(family)
    inner = build_random_model(cfg, seed=0)
    weights = {k[len("weights.") :]: v for k, v in g.items() if k.startswith("weights.")}
    inner.load_state_dict(weights, strict=False)
    model = HookedMDM(inner.eval(), detect_family(cfg), build_test_tokenizer(style=family, vocab_size=320), cfg)
    return family, meta, g, model


def test_same_weights_same_logits_as_tls_bridge(run):
    """The premise of every other test here: TL's bidirectional bridge run and mdm-lens agree on these weights."""
    family, meta, g, model = run
    torch.testing.assert_close(model(g["input_ids"]), g["logits"], atol=ATOL, rtol=0)


def test_head_weights_and_biases_are_tls(run):
    family, meta, g, model = run
    for attr in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "b_in", "b_out"):
        if attr in meta["errors"]:
            with pytest.raises(AttributeError, match=attr):  # TL: bias-free projections expose none
                getattr(model, attr)
            continue
        got = getattr(model, attr)
        assert got.shape == g[f"param.{attr}"].shape, attr
        torch.testing.assert_close(got.float(), g[f"param.{attr}"], atol=0, rtol=0, msg=attr)  # a reshape: exact
    assert (
        sorted(meta["errors"])
        == {"llada": ["b_K", "b_O", "b_Q", "b_V", "b_in", "b_out"], "dream": ["b_O", "b_in", "b_out"]}[family]
    )


def test_qk_ov_factored_matrices_are_tls(run):
    family, meta, g, model = run
    qk, ov = model.QK, model.OV
    assert isinstance(qk, FactoredMatrix) and list(qk.shape) == meta["QK_shape"] and list(ov.shape) == meta["OV_shape"]
    for label, fm in (("QK", qk), ("OV", ov)):
        head = fm[1, 2]
        torch.testing.assert_close(head.AB, g[f"fm.{label}.1_2.AB"], atol=1e-6, rtol=0, msg=label)
        # spectra: float32 SVDs by different routes, relative 1e-4
        torch.testing.assert_close(fm.S, g[f"fm.{label}.S"], atol=1e-5, rtol=1e-4, msg=label)
        torch.testing.assert_close(fm.norm(), g[f"fm.{label}.norm"], atol=1e-5, rtol=1e-4, msg=label)
        ours = torch.view_as_real(head.eigenvalues)
        ref = g[f"fm.{label}.1_2.eigenvalues"]
        torch.testing.assert_close(
            torch.tensor(sorted(ours.tolist())),
            torch.tensor(sorted(ref.tolist())),  # any order
            atol=1e-4,
            rtol=1e-4,
            msg=label,
        )
    torch.testing.assert_close((qk @ torch.eye(64)).AB[1, 2], qk[1, 2].AB)
    assert model.blocks[1].attn.W_Q.shape == model.W_Q[1].shape and torch.equal(model.blocks[0].mlp.W_in, model.W_in[0])


def test_compute_head_results_is_tls(run):
    family, meta, g, model = run
    _, cache = model.run_with_cache(g["input_ids"], names_filter=lambda n: n.endswith(("attn.hook_z", "hook_attn_out")))
    with pytest.raises(KeyError, match="hook_result"):
        cache["result", 0]
    cache.compute_head_results()
    for layer in range(model.n_layers):
        torch.testing.assert_close(
            cache[f"blocks.{layer}.attn.hook_z"], g[f"cache.blocks.{layer}.attn.hook_z"], atol=ATOL, rtol=0
        )
        res = cache["result", layer]
        torch.testing.assert_close(res, g[f"result.blocks.{layer}.attn.hook_result"], atol=ATOL, rtol=0)
        torch.testing.assert_close(res.sum(-2), cache["attn_out", layer], atol=1e-5, rtol=0)  # heads sum to attn_out
    torch.testing.assert_close(cache.stack_head_results(layer=-1), g["stack_head_results"], atol=ATOL, rtol=0)


def test_add_hook_and_reset_hooks_follow_tl(run):
    family, meta, g, model = run
    ids = g["input_ids"]

    def ablate_head_1(z, hook):
        z = z.clone()
        z[:, :, 1] = 0.0
        return z

    try:
        model.add_hook("blocks.0.attn.hook_z", ablate_head_1)
        torch.testing.assert_close(model(ids), g["hooks.added"], atol=ATOL, rtol=0)
        torch.testing.assert_close(model(ids), g["hooks.added"], atol=ATOL, rtol=0)  # kept across forwards
        model.add_hook(lambda n: n == "blocks.1.hook_mlp_out", lambda x, hook: x * 2, is_permanent=True)
        torch.testing.assert_close(model(ids), g["hooks.added_and_permanent"], atol=ATOL, rtol=0)
        assert model.tl_hooks == [("blocks.0.attn.hook_z", False), ("blocks.1.hook_mlp_out", True)]
        model.reset_hooks()
        torch.testing.assert_close(model(ids), g["hooks.after_reset"], atol=ATOL, rtol=0)
        with model.hooks({"hook_embed": lambda a, ctx: None}):  # context-managed hooks ride alongside
            torch.testing.assert_close(model(ids), g["hooks.after_reset"], atol=ATOL, rtol=0)
        assert model.hooks_attached
    finally:
        model.reset_hooks(including_permanent=True)
    torch.testing.assert_close(model(ids), g["hooks.after_reset_permanent"], atol=ATOL, rtol=0)
    assert not model.hooks_attached and model.tl_hooks == []
    with pytest.raises(KeyError, match="closest"):
        model.add_hook("blocks.0.attn.hook_zz", ablate_head_1)
    assert model.tl_hooks == [] and not model.hooks_attached


def test_generate_verbose_is_tls_progress(run, capsys):
    family, meta, g, model = run
    kw = {"llada": dict(gen_length=4, steps=2, block_length=4), "dream": dict(max_new_tokens=4, steps=2)}[family]
    quiet = model.generate(["hello"], chat=False, seed=0, **kw)
    loud = model.generate(["hello"], chat=False, seed=0, verbose=True, **kw)
    assert torch.equal(quiet.tokens, loud.tokens)
    assert "denoising" in capsys.readouterr().err


def test_test_prompt_shows_masked_predictions_per_step(run, capsys):
    from mdm_lens.prompt_probe import test_prompt as probe

    family, meta, g, model = run
    kw = {"llada": dict(gen_length=4, steps=4, block_length=4), "dream": dict(max_new_tokens=4, steps=4)}[family]
    kw["temperature"] = 0.0
    answer = model.to_string(model.to_tokens("hello")[0])
    recs = probe("hello world", answer, model, top_k=3, chat=False, **kw)
    out = model.generate(["hello world"], chat=False, seed=0, **kw)
    by_step = {}
    for r in recs:
        by_step.setdefault(r.step, []).append(r.position)
    assert sorted(by_step) == list(range(len(by_step))) and by_step[0] == [0, 1, 2, 3]
    for s in range(1, len(by_step)):  # what is masked only shrinks
        assert set(by_step[s]) <= set(by_step[s - 1])
    assert all(len(r.top_ids) == 3 and r.top_probs == sorted(r.top_probs, reverse=True) for r in recs)
    # greedy: what the last step still predicts is decoded to its top prediction, as generate decodes it
    for r in (r for r in recs if r.step == max(by_step)):
        assert out.tokens[0, r.position] == r.top_ids[0]
    assert recs[0].position == 0 and recs[0].answer_rank is not None and 0 <= recs[0].answer_prob <= 1
    assert all(r.answer_rank is None for r in recs if r.position > 0)
    printed = capsys.readouterr().out
    assert "step   0 pos   0" in printed and "answer rank" in printed
