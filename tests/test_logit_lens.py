"""The per-step logit lens: values equal the hand-computed lens on activations cached during the generation
itself (final RMSNorm with its weight, then W_U; the last layer equals the sampler's own logits), only still-masked
positions are read, and the summaries agree with the records."""

import math

import pytest
import torch

from analyses.logit_lens import layer_summary, logit_lens

SETTINGS = {
    "llada": dict(gen_length=8, steps=8, block_length=4, temperature=0.0),
    "dream": dict(max_new_tokens=8, steps=8, alg="maskgit_plus", temperature=0.0),
}


def _lens_by_hand(model, resid, eps):
    norm_w = model.model.get_submodule(model.site("ln_final.hook_out").module_path).weight.detach()
    h = resid.float() * torch.rsqrt(resid.float().pow(2).mean(-1, keepdim=True) + eps)
    return (norm_w.float() * h) @ model.W_U.float()


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_lens_equals_hand_computation_on_the_generation_own_activations(family, request):
    model = request.getfixturevalue(f"tiny_{family}")
    prompts = ["hello world", "the cat sat on the mat"]
    steps, layers = [0, 3, 6], [0, 1]
    names = [f"blocks.{l}.hook_resid_post" for l in layers] + ["hook_logits"]
    with model.cache_steps(names, steps=steps) as cache:
        out = model.generate(prompts, seed=1, **SETTINGS[family])
    res = logit_lens(model, prompts, at_steps=steps, layers=layers, seed=1, **SETTINGS[family])
    assert res.texts == out.texts and res.steps == steps and res.layers == layers
    plen, shift = out.prompt_length, 1 if family == "dream" else 0
    assert res.records
    for rec in res.records:
        s, l, r, g = rec["step"], rec["layer"], rec["prompt"], rec["position"]
        assert out.decode_step[r, g] >= s  # still masked in step s's input
        assert rec["final_token"] == int(out.tokens[r, g]) and rec["decode_step"] == int(out.decode_step[r, g])
        resid = cache[f"blocks.{l}.hook_resid_post", s][r, plen + g - shift]
        probs = _lens_by_hand(model, resid, model.cfg.eps).softmax(-1)
        assert rec["p_final"] == pytest.approx(float(probs[rec["final_token"]]), abs=1e-5)
        assert rec["top1_token"] == int(probs.argmax())
        if l == model.n_layers - 1:  # the last layer's lens is the model's logits
            real = cache["hook_logits", s][r, plen + g - shift].float().softmax(-1)
            assert rec["p_final"] == pytest.approx(float(real[rec["final_token"]]), abs=1e-5)
    # every still-masked decoded position appears once per (step, layer)
    for s in steps:
        n = int((out.decode_step >= s).sum())
        assert sum(1 for rec in res.records if rec["step"] == s and rec["layer"] == 0) == n


def test_summaries_agree_with_records_and_plot(tiny_llada, tmp_path):
    res = logit_lens(tiny_llada, ["hello world"], seed=0, **SETTINGS["llada"])
    assert res.steps == list(range(8)) and res.layers == [0, 1]
    for g in res.grid:
        mine = [r for r in res.records if r["layer"] == g["layer"] and r["step"] == g["step"]]
        assert g["n_masked"] == len(mine)
        if mine:
            assert g["top1_rate"] == pytest.approx(sum(r["is_top1"] for r in mine) / len(mine))
            assert g["mean_p_final"] == pytest.approx(sum(r["p_final"] for r in mine) / len(mine))
    for f in res.first_top1:
        mine = [
            r
            for r in res.records
            if (r["layer"], r["position"], r["prompt"]) == (f["layer"], f["position"], f["prompt"])
        ]
        hits = [r["step"] for r in mine if r["is_top1"]]
        assert f["first_top1_step"] == (min(hits) if hits else None)
        if hits:
            assert f["lead_steps"] == f["decode_step"] - min(hits)
    # greedy decoding takes the final layer's argmax: at its decode step the last layer ranks the token top-1
    for r in res.records:
        if r["layer"] == 1 and r["step"] == r["decode_step"]:
            assert r["is_top1"]
    summary = layer_summary(res)
    assert [s["layer"] for s in summary] == [0, 1] and summary[1]["ever_top1"] == summary[1]["positions"]
    m = res.matrix("top1_rate")
    assert m.shape == (2, 8) and not math.isnan(float(m[0, 0]))
    path = res.plot(tmp_path / "lens.png")
    assert (tmp_path / "lens.png").stat().st_size > 1000 and path.endswith("lens.png")


def test_text_positions_and_bad_choices(tiny_llada):
    res = logit_lens(
        tiny_llada, ["hello world"], seed=0, positions="text", at_steps=[0], layers=[1], **SETTINGS["llada"]
    )
    assert all(r["in_text"] for r in res.records)
    with pytest.raises(ValueError, match=r"steps \[9\] out of range.*0\.\.7"):
        logit_lens(tiny_llada, ["hello world"], at_steps=[9], **SETTINGS["llada"])
    with pytest.raises(ValueError, match="positions"):
        logit_lens(tiny_llada, ["hello world"], positions="some", **SETTINGS["llada"])


def test_cli_lens_writes_records_and_figure(tmp_path, capsys):
    import csv
    import json

    from analyses.cli import commands as cli
    from analyses.logit_lens import POSITIONS
    from mdm_lens.loading import save_pretrained
    from mdm_lens.testing import tiny_model

    assert cli.LENS_POSITIONS == POSITIONS
    model = tiny_model("llada")
    with torch.no_grad():  # a random model may predict [MASK] and never unmask (as tests/conftest.py)
        model.model.get_submodule(model.site("hook_logits").linear).weight[model.mask_id] = 0
    folder = tmp_path / "ckpt"
    save_pretrained(model.model, model.tokenizer, model.config, folder)
    out = tmp_path / "out"
    rc = cli.main(
        [
            "lens",
            "--model",
            str(folder),
            "--prompt",
            "hello world",
            "--prompt",
            "the cat",
            "--out",
            str(out),
            "--gen-length",
            "8",
            "--steps",
            "4",
            "--block-length",
            "4",
            "--at-steps",
            "0",
            "2",
            "--layers",
            "1",
        ]
    )
    assert rc == 0
    recs = json.loads((out / "lens.json").read_text())
    assert recs and {r["step"] for r in recs} <= {0, 2} and {r["layer"] for r in recs} == {1}
    with open(out / "lens.csv") as f:
        assert len(list(csv.DictReader(f))) == len(recs)
    grid = json.loads((out / "lens_grid.json").read_text())
    assert [(g["layer"], g["step"]) for g in grid] == [(1, 0), (1, 2)]
    assert (out / "lens.png").stat().st_size > 1000
    assert '"layer": 1' in capsys.readouterr().out


def test_fast_sampler_is_refused_with_the_reason(tiny_llada):
    """Issue 20, point 6: a replay through full forwards is not the KV-cached sampler's own activations."""
    with pytest.raises(ValueError, match=r"logit_lens\(sampler='fast'\) is refused: the lens replays .* KV-cached"):
        logit_lens(tiny_llada, [[5, 6, 7]], sampler="fast", steps=4, gen_length=4, block_length=4)
