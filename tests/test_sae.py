"""interventions.sae / sae_io: SAELens goldens both ways, the architectures' rules, splices, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interventions import SAE, Plan
from mdm_lens import HookedMDM
from mdm_lens.testing import tiny_config

GOLD = Path(__file__).parent / "fixtures" / "sae"
ARCHS = ("standard", "topk", "batchtopk", "jumprelu")


@pytest.mark.parametrize("arch", ARCHS)
def test_saelens_goldens_encode_decode(arch):
    """Folders written by SAELens 6.54's own save: our encode / decode / forward equal SAELens's. Tolerance 1e-5:
    float32 matmuls of width 16-64 in another process may sum in another order (observed max 4e-7)."""
    sae = SAE.load(GOLD / arch)
    io = load_file(str(GOLD / arch / "io.safetensors"))
    with torch.no_grad():
        f = sae.encode(io["x"])
        assert torch.equal(f != 0, io["encode"] != 0)  # the same latents fire
        torch.testing.assert_close(f, io["encode"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae.decode(io["encode"]), io["decode"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae(io["x"]), io["forward"], atol=1e-5, rtol=1e-5)
    assert sae.metadata["hook_name"] == "blocks.1.hook_resid_post"


def test_saelens_loads_our_save_recorded_fact():
    """The golden script re-saved each golden with mdm-lens and loaded it with SAELens: same outputs."""
    facts = json.loads((GOLD / "facts.json").read_text())
    assert facts["sae_lens_version"] == "6.54.12"
    for arch in ARCHS:
        r = facts["roundtrip"][arch]
        assert r["sae_lens_loads_mdm_lens_save"] and r["metadata_kept"]
        assert r["max_abs_diff_forward"] < 1e-5
    # SAELens ships a BatchTopK SAE as a JumpReLU (one threshold on every latent): so do we
    assert facts["architectures"]["batchtopk"]["cfg_architecture"] == "jumprelu"


def test_batchtopk_training_rule_matches_saelens_and_budget():
    """BatchTopK keeps exactly k·n latents over the batch (not k per row), as SAELens's training SAE does."""
    gold = load_file(str(GOLD / "batchtopk_train.safetensors"))
    jr = SAE.load(GOLD / "batchtopk")  # the folded weights; SAELens's threshold is the jump
    sae = SAE(jr.d_in, jr.d_sae, "batchtopk", k=5)
    with torch.no_grad():
        for k in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, k).copy_(getattr(jr, k))
    f, _ = sae.train_encode(gold["x"])
    torch.testing.assert_close(f, gold["train_encode"], atol=1e-5, rtol=1e-5)
    assert int((f != 0).sum()) == 5 * gold["x"].shape[0]
    assert len(set((f != 0).sum(-1).tolist())) > 1  # rows differ: the budget is the batch's


def test_topk_exactly_k_and_jumprelu_threshold():
    torch.manual_seed(0)
    sae = SAE.init(32, 256, "topk", k=7, seed=1)
    with torch.no_grad():
        sae.b_enc.fill_(5.0)  # every pre-activation positive: exactly k survive ReLU
    f = sae.encode(torch.randn(3, 10, 32))
    assert ((f != 0).sum(-1) == 7).all()
    jr = SAE.init(32, 256, "jumprelu", seed=1)
    with torch.no_grad():
        jr.threshold.fill_(0.3)
    x = torch.randn(50, 32)
    pre, f = jr.pre_acts(x), jr.encode(x)
    assert torch.equal(f != 0, pre > 0.3) and torch.equal(f[f != 0], pre[pre > 0.3])


def test_refusals():
    with pytest.raises(ValueError, match="k in"):
        SAE(8, 16, "topk")
    with pytest.raises(ValueError, match="unknown SAE architecture 'gated'"):
        SAE(8, 16, "gated")
    bad = SAE.init(8, 16, "topk", k=2)
    with torch.no_grad():
        bad.W_dec[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        bad.save("/nonexistent-never-written")
    with pytest.raises(ValueError, match="d_in=8 applied to activations of width 9"):
        SAE.init(8, 16, "topk", k=2).encode(torch.zeros(2, 9))


def test_nan_file_refused(tmp_path):
    sae = SAE.load(GOLD / "topk")
    sae.save(tmp_path / "ok")
    from safetensors.torch import save_file

    w = load_file(str(tmp_path / "ok" / "sae_weights.safetensors"))
    w["b_enc"][0] = float("nan")
    save_file(w, str(tmp_path / "ok" / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match="b_enc has 1 NaN"):
        SAE.load(tmp_path / "ok")


@pytest.fixture(scope="module")
def model():
    return HookedMDM.from_config(tiny_config("llada"), seed=0)


SITE = "blocks.1.hook_resid_post"


def _sae_for(model, seed=0) -> SAE:
    d = model.site(SITE).width
    return SAE.init(
        d,
        4 * d,
        "topk",
        k=8,
        seed=seed,
        metadata={"model_name": "tiny", "hook_name": SITE, "mdm_lens": {"family": model.spec.name}},
    )


def test_error_term_splice_is_identity_and_edits_act(model):
    sae = _sae_for(model)
    ids = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        clean = model(ids)
        with model.steer(Plan({SITE: sae.splice(error_term=True)})):
            same = model(ids)
        with model.steer(Plan({SITE: sae.splice(error_term=False)})):
            recon = model(ids)
        with model.steer(Plan({SITE: sae.ablate([0, 1, 2, 3, 4, 5])})):
            ablated = model(ids)
    assert torch.equal(same, clean)  # bit for bit: the error term is added back
    assert (recon - clean).abs().max() > 1e-3  # without it the SAE's error shows
    assert (ablated - clean).abs().max() > 0  # an edit inside the splice acts


def test_splice_clamp_and_steer_fold(model, tmp_path):
    sae = _sae_for(model)
    x = torch.randn(4, model.site(SITE).width)
    out = sae.clamp(3, 2.5, error_term=False)(x)
    f = sae.encode(x)
    f[:, 3] = 2.5
    torch.testing.assert_close(out, sae.decode(f))
    steer = sae.steer(3, 4.0)
    torch.testing.assert_close(steer(x) - x, 4.0 * (sae.W_dec[3] / sae.W_dec[3].norm()).expand_as(x))
    from interventions import fold

    ids = torch.randint(0, 50, (1, 10))
    plan = Plan({"blocks.1.mlp.hook_out": sae.steer(3, 4.0)})
    with torch.no_grad(), model.steer(plan):
        hooked = model(ids)
    with fold(model, plan), torch.no_grad():
        folded = model(ids)
    torch.testing.assert_close(folded, hooked, atol=1e-4, rtol=1e-4)  # fold is exact up to float32 rounding


def test_foreign_sae_refused(model, tmp_path):
    sae = _sae_for(model)
    sae.check(model)
    foreign = SAE.init(
        sae.d_in,
        32,
        "topk",
        k=2,
        metadata={"model_name": "Dream-org/Dream-v0-Instruct-7B", "hook_name": SITE, "mdm_lens": {"family": "dream"}},
    )
    foreign.save(tmp_path / "f")
    with pytest.raises(ValueError, match=r"'dream' model \(Dream-org.*this is a 'llada'"):
        SAE.load(tmp_path / "f").check(model)
    wide = SAE.init(sae.d_in + 8, 32, "topk", k=2, metadata={"mdm_lens": {"family": "llada"}})
    with pytest.raises(ValueError, match=rf"width {sae.d_in + 8}.*carries width {sae.d_in}"):
        wide.check(model, SITE)
