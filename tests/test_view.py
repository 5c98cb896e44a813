"""The trace viewer: its data equal the generation's own (sampler logits, decode trace, TL logit lens, hook_pattern,
an encoder on a site), the page is self-contained, and headless Chromium runs it without console errors, shows the
generation's steps, positions and text, and follows the slider."""

import json
import os
import re

import pytest
import torch

from analyses.bench.view import chromium, run_page
from analyses.view import FeatureSpec, render, trace_generation
from analyses.view.extract import default_detail_steps

SETTINGS = {
    "llada": {"gen_length": 8, "steps": 8, "block_length": 4, "temperature": 0.0},
    "dream": {"max_new_tokens": 8, "steps": 8, "alg": "maskgit_plus", "temperature": 0.0},
}


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_topk_and_trace_equal_the_sampler_own_logits(family, request):
    model = request.getfixturevalue(f"tiny_{family}")
    with model.cache_steps(["hook_logits"]) as cache:
        out = model.generate(["hello world"], seed=3, return_history=True, **SETTINGS[family])
    tr = trace_generation(model, "hello world", seed=3, top_k=4, **SETTINGS[family])
    assert tr.tokens == out.tokens[0].tolist() and tr.decode_step == out.decode_step[0].tolist()
    assert tr.text == out.texts[0] and tr.n_steps == 8
    plen, shift = out.prompt_length, 1 if family == "dream" else 0
    for s in range(8):
        p = cache["hook_logits", s][0, plen - shift : plen - shift + 8].float().softmax(-1)
        v, i = p.topk(4, -1)
        assert torch.equal(tr.topk_ids[s].long(), i)
        # stored as float16: relative error <= 2^-11
        torch.testing.assert_close(tr.topk_probs[s].float(), v, atol=1e-3, rtol=1e-3)
    for g, d in enumerate(tr.decode_step):  # the committed token is top-1 at its step (greedy sampler)
        if d >= 0:
            assert int(tr.topk_ids[d, g, 0]) == tr.tokens[g]


def test_lens_and_attention_equal_the_existing_analyses(tiny_llada):
    from analyses.logit_lens import logit_lens

    kw = SETTINGS["llada"]
    tr = trace_generation(tiny_llada, "the cat sat", seed=1, top_k=3, detail_steps=[0, 5], **kw)
    assert tr.lens["steps"] == [0, 5] and tr.lens["layers"] == [0, 1]
    res = logit_lens(tiny_llada, ["the cat sat"], at_steps=[0, 5], seed=1, **kw)
    assert res.records
    for rec in res.records:
        si, li, g = tr.lens["steps"].index(rec["step"]), rec["layer"], rec["position"]
        assert int(tr.lens["ids"][si, li, g, 0]) == rec["top1_token"]
        hit = (tr.lens["ids"][si, li, g] == rec["final_token"]).nonzero()
        if len(hit):  # same float32 computation: equal to float rounding
            assert float(tr.lens["probs"][si, li, g, hit[0, 0]]) == pytest.approx(rec["p_final"], abs=1e-5)
    with tiny_llada.cache_steps(["blocks.1.attn.hook_pattern"], steps=[5]) as cache:
        out = tiny_llada.generate(["the cat sat"], seed=1, **kw)
    plen = out.prompt_length
    pat = cache["blocks.1.attn.hook_pattern", 5][0, :, plen : plen + 8].float()  # [head, query, key]
    v, _ = pat.topk(tr.attention["keys"].shape[-1], -1)
    a = tr.attention
    assert a["layers"] == [0, 1] and a["n_heads"] == tiny_llada.cfg.n_heads
    torch.testing.assert_close(a["weights"][1, 1], v, atol=1e-5, rtol=1e-5)  # replay = the sampler's forward
    torch.testing.assert_close(torch.gather(pat, -1, a["keys"][1, 1].long()), v, atol=1e-5, rtol=1e-5)


def test_features_are_the_encoder_top_k_at_every_step(tiny_llada):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(tiny_llada.cfg.d_model, 40, generator=g)
    spec = FeatureSpec("blocks.0.hook_resid_post", lambda x: torch.relu(x.float() @ W), k=3, labels={7: "seven"})
    kw = SETTINGS["llada"]
    tr = trace_generation(tiny_llada, "hello", seed=0, features=spec, detail_steps=[], **kw)
    assert tr.lens is None and tr.attention is None
    with tiny_llada.cache_steps(["blocks.0.hook_resid_post"]) as cache:
        out = tiny_llada.generate(["hello"], seed=0, **kw)
    plen = out.prompt_length
    for s in (0, 4, 7):
        v, i = torch.relu(cache["blocks.0.hook_resid_post", s][0, plen : plen + 8].float() @ W).topk(3, -1)
        assert torch.equal(tr.features["ids"][s].long(), i)
        torch.testing.assert_close(tr.features["acts"][s].float(), v, atol=2e-3, rtol=2e-3)  # float16 storage
    assert tr.features["labels"] == {7: "seven"}


def test_bad_options_are_refused_with_the_valid_range(tiny_llada, tmp_path):
    kw = SETTINGS["llada"]
    with pytest.raises(ValueError, match="top_k=0"):
        trace_generation(tiny_llada, "hi", top_k=0, **kw)
    with pytest.raises(ValueError, match=r"steps \[9\] out of range: this run has steps 0..7"):
        trace_generation(tiny_llada, "hi", detail_steps=[9], **kw)
    with pytest.raises(TypeError, match="one str"):
        render(tiny_llada, [1, 2])
    with pytest.raises(ValueError, match="damage_mc"):
        render(tiny_llada, "hi", damage_mc=0)
    with pytest.raises(ValueError, match="k=0"):
        FeatureSpec("blocks.0.hook_resid_post", torch.relu, k=0)
    nan = FeatureSpec("blocks.0.hook_resid_post", lambda x: torch.full((x.shape[0], 4), float("nan")))
    with pytest.raises(FloatingPointError, match="NaN or inf at step 0"):
        trace_generation(tiny_llada, "hi", features=nan, **kw)
    assert tiny_llada.hooks_attached is False  # nothing leaked by the refusals
    view = render(tiny_llada, "hi", **kw)
    with pytest.raises(ValueError, match=r"\.html"):
        view.save(tmp_path / "x.txt")
    assert default_detail_steps(256) == [0, 51, 102, 153, 204, 255] and default_detail_steps(3) == [0, 1, 2]


def _steering_plan(model):
    from interventions import MeanACT, Plan

    site = "blocks.2.hook_resid_post"
    g = torch.Generator().manual_seed(0)
    d = model.site(site).width
    A = torch.randn(16, d, generator=g, dtype=torch.float64)
    return Plan({site: MeanACT.fit(A, A + 6.0 * torch.randn(d, generator=g, dtype=torch.float64))})


@pytest.fixture(scope="module")
def organism():
    from mdm_lens import HookedMDM

    return HookedMDM.from_pretrained("tiny-mdm")


@pytest.fixture(scope="module")
def pair_view(organism):
    g = torch.Generator().manual_seed(1)
    W = torch.randn(organism.cfg.d_model, 64, generator=g)
    spec = FeatureSpec("blocks.1.hook_resid_post", lambda x: torch.relu(x.float() @ W), labels={3: "three"})
    return render(
        organism,
        ["Write a short note about cats.", "Describe the sea."],
        plan=_steering_plan(organism),
        damage_mc=4,
        features=spec,
        steps=24,
    )


def test_pair_marks_differing_positions_and_carries_damage(pair_view, organism, tmp_path):
    from analyses.damage import damage

    for group, doc in zip(pair_view.traces, pair_view.doc["groups"]):
        a, b = group
        assert (a.label, b.label) == ("unsteered", "steered")
        assert doc["diff"] == [i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y]
        again = damage(organism, [a.prompt, b.prompt], [a.text, b.text], mc_num=4, batch_size=4, seed=0)
        assert [a.damage, b.damage] == again
    assert any(g["diff"] for g in pair_view.doc["groups"])  # the plan changed the answer somewhere
    path = pair_view.save(tmp_path / "pair.html")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text == pair_view.html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched from anywhere
    frame = re.fullmatch(r'<iframe srcdoc="(.*)" style=.*', pair_view._repr_html_(), re.DOTALL)
    import html

    assert frame and html.unescape(frame.group(1)) == text  # notebook: the same page


def test_cli_writes_the_page_and_refuses_bad_paths(tmp_path, organism, capsys):
    from analyses.cli import main

    plan_path = tmp_path / "plan.safetensors"
    _steering_plan(organism).save(plan_path, model=organism)
    out = tmp_path / "trace.html"
    assert (
        main(
            [
                "view",
                "--model",
                "tiny-mdm",
                "--prompt",
                "Describe the sea.",
                "--plan",
                str(plan_path),
                "--out",
                str(out),
                "--steps",
                "12",
                "--damage-mc",
                "2",
            ]
        )
        == 0
    )
    page = out.read_text(encoding="utf-8")
    doc = json.loads(
        re.search(r'<script type="application/json" id="mdm-data">(.*?)</script>', page, re.DOTALL).group(1)
    )
    assert [r["label"] for r in doc["groups"][0]["runs"]] == ["unsteered", "steered"]
    assert doc["groups"][0]["runs"][0]["n_steps"] == 12
    assert main(["view", "--prompt", "x", "--out", str(tmp_path / "t.txt")]) == 2
    assert main(["view", "--prompt", "x", "--plan", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ in a real browser
needs_chromium = pytest.mark.skipif(
    chromium() is None,
    reason="headless Chromium not installed (Debian package "
    "`chromium`; .ci/run installs it): the browser tests cannot run here",
)

READ = """
function read() {
  return Array.prototype.map.call(document.querySelectorAll('.gen-panel'), function (p) {
    var toks = p.querySelectorAll('.tok'), com = p.querySelectorAll('.tok[data-committed="1"]');
    return {label: p.dataset.label, steps: +p.dataset.steps, positions: +p.dataset.positions, spans: toks.length,
            committed: com.length,
            text: Array.prototype.map.call(com, function (t) { return t.dataset.piece; }).join(''),
            tokens: Array.prototype.map.call(toks, function (t) { return t.dataset.token; })};
  });
}
var s = document.getElementById('step'), R = {ready: document.getElementById('mdm-root').dataset.ready,
  max: +s.max, label: document.getElementById('step-label').dataset.step, final: read(), by: {}};
[0, 5, 11].forEach(function (k) { s.value = k; s.dispatchEvent(new Event('input'));
  R.by[k] = {label: document.getElementById('step-label').dataset.step, panels: read()}; });
document.querySelectorAll('.tok')[2].click();
R.cards = Array.prototype.map.call(document.querySelectorAll('.card h3'), function (h) { return h.textContent; });
return R;
"""


@needs_chromium
def test_chromium_runs_the_page_shows_the_generation_and_follows_the_slider(pair_view, tmp_path):
    shot = tmp_path / "viewer.png"
    res = run_page(pair_view.html, READ, screenshot=str(shot))
    assert res.get("driver_error") is None and res["errors"] == [] and res["console"] == []
    assert res["ready"] == "1" and res["max"] == 23 and res["label"] == "23"
    a, b = pair_view.traces[0]
    for panel, tr in zip(res["final"], (a, b)):
        assert panel["label"] == tr.label and panel["steps"] == tr.n_steps == 24
        assert panel["positions"] == panel["spans"] == len(tr.tokens)
        assert panel["text"] == tr.text  # committed tokens = the generation
        done = [str(t) if d >= 0 else "" for t, d in zip(tr.tokens, tr.decode_step)]
        assert panel["tokens"] == done
        assert panel["committed"] == sum(d >= 0 for d in tr.decode_step)
    for k in (0, 5, 11):  # the slider changes the shown step
        assert res["by"][str(k)]["label"] == str(k)
        for panel, tr in zip(res["by"][str(k)]["panels"], (a, b)):
            assert panel["committed"] == sum(0 <= d <= k for d in tr.decode_step)
    assert any("logit lens" in c for c in res["cards"]) and any("attention" in c for c in res["cards"])
    assert any("features" in c for c in res["cards"])
    assert shot.stat().st_size > 10_000
    print(f"viewer screenshot: {shot}")
    if os.environ.get("MDM_LENS_ARTIFACTS"):
        import shutil

        os.makedirs(os.environ["MDM_LENS_ARTIFACTS"], exist_ok=True)
        shutil.copy(shot, os.path.join(os.environ["MDM_LENS_ARTIFACTS"], "viewer.png"))
