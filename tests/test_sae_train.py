"""analyses.sae: the activation store's positions, training (resume = uninterrupted), evaluation by mask ratio."""

from __future__ import annotations

import pytest
import torch

from analyses.sae import ActivationStore, TrainConfig, train_sae
from analyses.sae.evaluate import evaluate_by_mask_ratio, evaluate_by_step
from interventions import SAE
from mdm_lens import HookedMDM
from mdm_lens.testing import tiny_config

SITE = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return HookedMDM.from_config(tiny_config("llada"), seed=0)


def _pairs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(3, 60, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g),
            torch.randint(3, 60, (5,), generator=g),
        )
        for _ in range(n)
    ]


def test_store_reads_the_variants_positions(model):
    """'mask' reads exactly the masked response positions, 'unmask' the rest of the response, nothing else."""
    kw = {
        "pairs": _pairs(2),
        "mask_ratios": (0.25, 0.5, 1.0),
        "gen_length": 8,
        "gen_batch": 2,
        "batch_size": 4,
        "buffer_size": 8,
    }
    a = ActivationStore(model, SITE, variant="mask", **kw)._read_pairs()
    b = ActivationStore(model, SITE, variant="unmask", **kw)._read_pairs()
    # ratios .25/.5/1 of 8 response positions: 2 + 4 + 8 masked per pair, 6 + 4 + 0 decoded
    assert a.shape == (2 * 14, model.site(SITE).width) and b.shape == (2 * 10, model.site(SITE).width)
    with pytest.raises(ValueError, match="unknown store variant 'masked'"):
        ActivationStore(model, SITE, variant="masked", **kw)


def test_store_from_generate_reads_chosen_steps(model):
    st = ActivationStore(
        model,
        SITE,
        prompts=[torch.tensor([5, 6, 7])],
        steps=[0],
        variant="mask",
        gen_batch=1,
        batch_size=2,
        buffer_size=4,
        generate_kwargs={"steps": 4, "gen_length": 8, "block_length": 8},
        chat=False,
    )
    x = st._read_generate()
    assert x.shape[0] == 8  # step 0: all 8 response positions are masked


def _train(model, out, stop_after=None, arch="topk"):
    st = ActivationStore(model, SITE, pairs=_pairs(), gen_length=6, gen_batch=2, batch_size=16, buffer_size=64, seed=3)
    cfg = TrainConfig(architecture=arch, d_sae=64, k=4, steps=8, lr=1e-2, checkpoint_every=2, log_every=2, dead_after=2)
    return train_sae(st, cfg, out=out, progress=False, stop_after=stop_after)


def test_resume_equals_uninterrupted(model, tmp_path):
    full, log_full = _train(model, tmp_path / "a")
    _train(model, tmp_path / "b", stop_after=5)  # paused mid-run (checkpoint at step 5)
    resumed, log_resumed = _train(model, tmp_path / "b")  # a fresh store and trainer pick it up
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert log_full == log_resumed
    loaded = SAE.load(tmp_path / "b" / "sae")
    assert loaded.metadata["mdm_lens"]["family"] == "llada" and loaded.metadata["hook_name"] == SITE
    assert torch.allclose(loaded.W_dec.norm(dim=-1), torch.ones(64), atol=1e-5)  # unit-norm decoder rows
    with pytest.raises(ValueError, match="other settings"):
        st = ActivationStore(model, SITE, pairs=_pairs(), gen_length=6, gen_batch=2, batch_size=16, buffer_size=64)
        train_sae(st, TrainConfig(d_sae=64, k=4, steps=9), out=tmp_path / "b", progress=False)


def test_batchtopk_trains_with_threshold(model, tmp_path):
    sae, log = _train(model, tmp_path / "c", arch="batchtopk")
    assert float(sae.threshold[0]) > 0 and log[-1]["l0"] == pytest.approx(4.0)
    assert SAE.load(tmp_path / "c" / "sae").architecture == "jumprelu"


def test_evaluate_by_mask_ratio_and_step(model):
    d = model.site(SITE).width
    sae = SAE.init(d, 4 * d, "topk", k=8, seed=0, metadata={"mdm_lens": {"family": "llada"}})
    ev = evaluate_by_mask_ratio(model, sae, SITE, _pairs(4), mask_ratios=(0.2, 0.8), gen_length=6)
    assert [r["mask_ratio"] for r in ev.records] == [0.2, 0.8]
    for r in ev.records:
        assert r["l0"] <= 8 and r["ce_clean"] > 0 and r["ce_zero"] != r["ce_clean"]
        gap = r["ce_zero"] - r["ce_clean"]  # a random model may do better with the site zeroed: then NaN
        if gap > 0:
            assert r["loss_recovered"] == pytest.approx((r["ce_zero"] - r["ce_sae"]) / gap)
        else:
            assert r["loss_recovered"] != r["loss_recovered"]
    assert "| mask_ratio" in ev.table_markdown()
    by_step = evaluate_by_step(
        model, sae, SITE, [torch.tensor([5, 6, 7])], chat=False, steps=4, gen_length=8, block_length=8
    )
    assert [r["step"] for r in by_step.records] == [0, 1, 2, 3]


def test_cli_sae_train_then_eval(tmp_path, capsys):
    """`mdm-lens sae train` then `eval` on the organism: an SAELens folder, records, a figure."""
    from analyses.cli.commands import main

    site = "blocks.2.hook_resid_post"
    assert (
        main(
            [
                "sae",
                "train",
                "--site",
                site,
                "--out",
                str(tmp_path),
                "--n-pairs",
                "4",
                "--steps",
                "3",
                "--batch-size",
                "16",
                "--d-sae",
                "64",
                "--k",
                "4",
            ]
        )
        == 0
    )
    sae = SAE.load(tmp_path / "sae")
    assert sae.metadata["mdm_lens"]["family"] == "llada" and sae.metadata["mdm_lens"]["variant"] == "mask"
    assert main(["sae", "eval", "--out", str(tmp_path), "--n-pairs", "2"]) == 0
    assert (tmp_path / "sae_eval.png").exists() and (tmp_path / "sae_eval.csv").read_text().count("\n") == 10


def test_features_contrast_trace_top_contexts(model):
    from analyses.sae.features import contrast_features, feature_trace, top_contexts

    d = model.site(SITE).width
    sae = SAE.init(d, 4 * d, "topk", k=8, seed=0, metadata={"mdm_lens": {"family": "llada"}})
    a = [torch.tensor([5, 6, 7, 8]), torch.tensor([5, 6, 9, 8])]
    b = [torch.tensor([40, 41, 42, 43]), torch.tensor([40, 44, 42, 43])]
    top = contrast_features(model, sae, SITE, a, b, top=3, chat=False, gen_length=6)
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    with pytest.raises(ValueError, match="unknown ranking"):
        contrast_features(model, sae, SITE, a, b, by="median", chat=False)
    gen = {"steps": 3, "gen_length": 6, "block_length": 6}
    tr = feature_trace(model, sae, SITE, a, [top[0]["feature"]], chat=False, **gen)
    assert tr.acts.shape == (3, 2, 6, 1)
    first = tr.first_fire(top[0]["feature"], 0)
    assert first is None or tr.acts[first[0], 0, first[1], 0] > 0
    recs = top_contexts(model, sae, SITE, a, top[0]["feature"], n=4, chat=False, **gen)
    acts = [r["activation"] for r in recs]
    assert acts == sorted(acts, reverse=True) and all(0 <= r["step"] < 3 for r in recs)
