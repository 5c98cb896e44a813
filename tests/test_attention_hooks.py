"""Attention internals (issue 11, point 1): hook_q/k/v, hook_rot_q/k (LLaDA), hook_attn_scores, hook_pattern, hook_z.

Tensors are checked against the formulas written out here (TL's layouts, GQA kept), edits against what the formula
says they change, and the eager path (taken per layer, only while scores / pattern are hooked) against SDPA."""

import math

import pytest
import torch

from mdm_lens.families import _layers
from mdm_lens.testing import tiny_model

FAMILIES = ["llada", "dream"]
F32_MIN = torch.finfo(torch.float32).min


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    """Tiny GQA models (2 kv heads for 4 query heads) with sharpened q / k so patterns are far from uniform."""
    family = request.param
    kw = {"n_kv_heads": 2} if family == "llada" else {}
    m = tiny_model(family, seed=3, **kw).eval()
    with torch.no_grad():
        for name, p in m.model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(40)
    return m


def _inputs(model, padded: bool):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 250, (2, 9), generator=g)
    ids[:, -3:] = model.mask_id
    if not padded:
        return ids, None
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # row 1 left-padded by 3
    ids[1, :3] = model.tokenizer.pad_token_id
    return ids, mask


def _names(model, role):
    return [f"blocks.{l}.attn.hook_{role}" for l in range(model.n_layers)]


def _rope(x, positions, theta):
    """x [b, p, h, dh] rotated by integer positions [b or 1, p] (rotate_half convention)."""
    dh = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh)
    ang = positions.float()[..., None] * inv
    ang = torch.cat((ang, ang), -1)[:, :, None]  # [b, p, 1, dh]
    half = torch.cat((-x[..., dh // 2 :], x[..., : dh // 2]), -1)
    return x * ang.cos() + half * ang.sin()


def _key_mask(model, mask, b, p):
    """[b, 1, q, k] bool: which keys each query sees (LLaDA: padded keys hidden; Dream: padded queries see none)."""
    if mask is None:
        return torch.ones(b, 1, p, p, dtype=torch.bool)
    keep = mask.bool()
    if model.cfg.family == "llada":
        return keep[:, None, None, :].expand(b, 1, p, p)
    return keep[:, None, None, :] & keep[:, None, :, None]


def test_unhooked_layers_keep_sdpa(model, monkeypatch):
    """The eager path runs for exactly the layers whose scores / pattern are hooked (or forced)."""
    calls = []
    eager = _layers._eager
    monkeypatch.setattr(_layers, "_eager", lambda *a: calls.append(1) or eager(*a))
    ids, _ = _inputs(model, False)
    model(ids)
    with model.hooks({"blocks.0.attn.hook_z": lambda a, c: None, "blocks.1.attn.hook_q": lambda a, c: None}):
        model(ids)
    assert calls == []  # z, q: no eager path needed
    with model.hooks({"blocks.1.attn.hook_pattern": lambda a, c: None}):
        model(ids)
    assert len(calls) == 1  # layer 1 only
    _, cache = model.run_with_cache(ids, names_filter="blocks.0.attn.hook_attn_scores")
    assert len(calls) == 2 and list(cache) == ["blocks.0.attn.hook_attn_scores"]
    with _layers.eager_attention(model):  # forced: every layer, hooked or not
        model(ids)
    assert len(calls) == 2 + model.n_layers
    with _layers.eager_attention(model, layers=[1]):
        model(ids)
    assert len(calls) == 3 + model.n_layers
    model(ids)
    assert len(calls) == 3 + model.n_layers  # restored on exit
    with pytest.raises(ValueError, match="out of range"), _layers.eager_attention(model, layers=[model.n_layers]):
        pass


def test_nnsight_reads_the_pattern_under_eager_attention(model):
    """nnsight wraps module forwards (no torch hooks), so the per-layer switch cannot see it: force the path."""
    from mdm_lens.nnsight_interop import MDMEnvelope

    ids, _ = _inputs(model, False)
    env = MDMEnvelope(model)
    with _layers.eager_attention(model, layers=[0]), env.trace(ids):
        pattern = env.act("blocks.0.attn.hook_pattern").save()
    _, cache = model.run_with_cache(ids, names_filter="blocks.0.attn.hook_pattern")
    assert torch.equal(pattern, cache["pattern", 0])


@pytest.mark.parametrize("padded", [False, True])
def test_eager_logits_equal_sdpa(model, padded):
    ids, mask = _inputs(model, padded)
    plain = model(ids, attention_mask=mask)
    with model.hooks({n: (lambda a, c: None) for n in _names(model, "pattern")}):
        eager = model(ids, attention_mask=mask)
    assert (eager - plain).abs().max() < 1e-5
    _, c_sdpa = model.run_with_cache(ids, attention_mask=mask, names_filter=_names(model, "z"))
    both = _names(model, "z") + _names(model, "pattern")
    _, c_eager = model.run_with_cache(ids, attention_mask=mask, names_filter=both)
    for l in range(model.n_layers):
        torch.testing.assert_close(c_eager["z", l], c_sdpa["z", l], atol=1e-5, rtol=0)
        if padded:  # padded keys get no mass; Dream's padded query rows are all zero (SDPA gives z = 0)
            pat = c_eager["pattern", l]
            assert pat[1, :, :, :3].abs().max() == 0
            if model.cfg.family == "dream":
                assert pat[1, :, :3].abs().max() == 0 and c_sdpa["z", l][1, :3].abs().max() == 0
                torch.testing.assert_close(pat[1, :, 3:].sum(-1), torch.ones(pat.shape[1], 6))
            else:
                torch.testing.assert_close(pat.sum(-1), torch.ones(pat.shape[:3]))


@pytest.mark.parametrize("padded", [False, True])
def test_tensors_follow_tls_formulas(model, padded):
    """q/k/v = the projections viewed [b, p, heads, dh] before rotary (kv heads kept); rot = rotary of them
    (LLaDA: positions 0..P-1 even when padded; Dream: cumsum of the mask); scores = rot_q . rot_k / sqrt(dh) with
    hidden keys at float32's min; pattern = softmax; z = pattern @ v (kv heads repeated); attn_out = z @ W_O."""
    ids, mask = _inputs(model, padded)
    _, c = model.run_with_cache(ids, attention_mask=mask)
    cfg, inner = model.cfg, model.model
    b, p = ids.shape
    heads, kvh, dh = cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads, cfg.d_head
    assert kvh == 2 < heads
    if cfg.family == "llada" or mask is None:
        pos = torch.arange(p)[None]
    else:
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    theta = inner.cfg.rope_theta
    for l in range(model.n_layers):
        h = c["blocks.%d.ln1.hook_out" % l]
        attn = model.site(f"blocks.{l}.attn.hook_q").module_path.rsplit(".", 2)[0]
        lin = {x: inner.get_submodule(f"{attn}.{x}_proj") for x in "qkv"}
        q, k, v = (lin[x](h).view(b, p, -1, dh) for x in "qkv")
        torch.testing.assert_close(c["q", l], q, atol=1e-6, rtol=0)
        torch.testing.assert_close(c["k", l], k, atol=1e-6, rtol=0)
        torch.testing.assert_close(c["v", l], v, atol=1e-6, rtol=0)
        assert c["k", l].shape == c["v", l].shape == (b, p, kvh, dh) and c["q", l].shape == (b, p, heads, dh)
        rq, rk = _rope(c["q", l], pos, theta), _rope(c["k", l], pos, theta)
        if cfg.family == "llada":
            torch.testing.assert_close(c["rot_q", l], rq, atol=2e-5, rtol=0)
            torch.testing.assert_close(c["rot_k", l], rk, atol=2e-5, rtol=0)
        rk = rk.repeat_interleave(heads // kvh, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", rq, rk) / math.sqrt(dh)
        keep = _key_mask(model, mask, b, p)
        scores = scores.masked_fill(~keep, F32_MIN)
        torch.testing.assert_close(c["attn_scores", l], scores, atol=1e-4, rtol=1e-5)
        pattern = scores.softmax(-1).masked_fill(~keep.any(-1, keepdim=True), 0.0)
        torch.testing.assert_close(c["pattern", l], pattern, atol=1e-5, rtol=0)
        assert pattern.max() > 0.5  # sharpened: the check is not between near-uniform rows
        z = torch.einsum("bhqk,bkhd->bqhd", c["pattern", l], c["v", l].repeat_interleave(heads // kvh, dim=2))
        torch.testing.assert_close(c["z", l], z, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            c["attn_out", l], torch.einsum("bqhd,hdm->bqm", c["z", l], model.W_O[l]), atol=1e-6, rtol=0
        )


def test_edits_change_the_output_as_the_formula_says(model):
    ids, mask = _inputs(model, True)
    layer, head = 1, 2
    keep = (
        _names(model, "pattern")
        + _names(model, "attn_scores")
        + _names(model, "z")
        + [f"blocks.{l}.hook_attn_out" for l in range(model.n_layers)]
    )
    _, c = model.run_with_cache(ids, attention_mask=mask, names_filter=keep)

    def edited(site, fn):
        with model.hooks({site: fn}):
            return model.run_with_cache(ids, attention_mask=mask, names_filter=keep)

    def zero_head(a, ctx):
        a = a.clone()
        a[:, head] = 0  # pattern [b, H, q, k]: head on dim 1
        return a

    # zeroing one head's pattern removes exactly that head's contribution: z_h = 0, attn_out - z_h @ W_O[h]
    out_p, cp = edited(f"blocks.{layer}.attn.hook_pattern", zero_head)
    assert cp["z", layer][:, :, head].abs().max() == 0
    expected = c["attn_out", layer] - c["z", layer][:, :, head] @ model.W_O[layer, head]
    torch.testing.assert_close(cp["attn_out", layer], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(cp["z", layer][:, :, :head], c["z", layer][:, :, :head], atol=1e-6, rtol=0)

    def zero_z_head(a, ctx):
        a = a.clone()
        a[:, :, head] = 0  # z [b, p, H, dh]: head on dim 2
        return a

    out_z, _ = edited(f"blocks.{layer}.attn.hook_z", zero_z_head)
    assert (out_p - out_z).abs().max() < 1e-5 and (out_p - model(ids, attention_mask=mask)).abs().max() > 1e-3
    # scores + B -> pattern = softmax(scores + B) (a query row that sees no key stays zero, as under SDPA)
    bias = torch.randn(c["attn_scores", layer].shape, generator=torch.Generator().manual_seed(0))
    _, cs = edited(f"blocks.{layer}.attn.hook_attn_scores", lambda a, ctx: a + bias)
    seen = _key_mask(model, mask, *ids.shape)
    expected = (c["attn_scores", layer] + bias).softmax(-1).masked_fill(~seen.any(-1, keepdim=True), 0)
    torch.testing.assert_close(cs["pattern", layer], expected, atol=1e-6, rtol=0)
    # v doubled -> z doubled; q or k zeroed -> uniform over the keys each query sees (rotary of 0 is 0)
    _, cv = edited(f"blocks.{layer}.attn.hook_v", lambda a, ctx: 2 * a)
    torch.testing.assert_close(cv["z", layer], 2 * c["z", layer], atol=1e-6, rtol=0)
    seen = seen.float()
    uniform = (seen / seen.sum(-1, keepdim=True).clamp_min(1)).expand_as(c["pattern", layer])
    for role in ("q", "k"):
        _, cq = edited(f"blocks.{layer}.attn.hook_{role}", lambda a, ctx: torch.zeros_like(a))
        torch.testing.assert_close(cq["pattern", layer], uniform, atol=1e-6, rtol=0)
    if model.cfg.family == "llada":  # after rotary too
        _, cr = edited(f"blocks.{layer}.attn.hook_rot_k", lambda a, ctx: torch.zeros_like(a))
        torch.testing.assert_close(cr["pattern", layer], uniform, atol=1e-6, rtol=0)
    # a shape-changing edit is refused
    with pytest.raises(Exception, match="shape|size"):
        edited(f"blocks.{layer}.attn.hook_pattern", lambda a, ctx: a[:, :1])


@pytest.mark.parametrize("how", ["prefix", "dual"])
def test_kv_cached_forwards_hook_the_computed_columns(model, how):
    """Under a KV cache, hooks see the computed columns only: q / k / v / z and the query axis of scores / pattern
    cover them, the key axis every key column; the numbers are the full forward's at those columns."""
    ids, _ = _inputs(model, False)
    b, p = ids.shape
    start, stop = 4, 7
    _, full = model.run_with_cache(ids, names_filter=_names(model, "pattern") + _names(model, "k"))
    past = model(ids, use_cache=True).past_key_values
    if how == "prefix":
        stop = p
        kw = dict(past_key_values=[(k[:, :, :start].clone(), v[:, :, :start].clone()) for k, v in past])
    else:
        replace = torch.zeros(b, p, dtype=torch.bool)
        replace[:, start:stop] = True
        kw = dict(past_key_values=[(k.clone(), v.clone()) for k, v in past], replace_position=replace)
    plain = model(
        ids[:, start:stop], **{**kw, "past_key_values": [(k.clone(), v.clone()) for k, v in kw["past_key_values"]]}
    )
    got = {}
    spec = {
        n: (lambda a, ctx: got.__setitem__(ctx.site, a.detach().clone()))
        for n in _names(model, "pattern") + _names(model, "k")
    }
    with model.hooks(spec):
        hooked = model(ids[:, start:stop], **kw)
    assert (hooked - plain).abs().max() < 1e-5
    kvh = model.cfg.n_key_value_heads or model.cfg.n_heads
    for l in range(model.n_layers):
        pat, k = got[f"blocks.{l}.attn.hook_pattern"], got[f"blocks.{l}.attn.hook_k"]
        assert pat.shape == (b, model.cfg.n_heads, stop - start, p)
        assert k.shape == (b, stop - start, kvh, model.cfg.d_head)
        torch.testing.assert_close(pat, full["pattern", l][:, :, start:stop], atol=3e-5, rtol=0)
        torch.testing.assert_close(k, full["k", l][:, start:stop], atol=1e-5, rtol=1e-5)


def test_attn_bench_reports_ratios_and_equal_logits(model):
    """`mdm-lens bench attn` (analyses.bench.attn): the JSON it prints, on a tiny model (timings are not asserted)."""
    from analyses.bench.attn import attn_bench

    out = attn_bench(model, seq=8, repeats=1)
    assert set(out["seconds"]) == {"plain", "z_all", "pattern_one", "pattern_all"}
    assert out["pattern_all_ratio"] == out["seconds"]["pattern_all"] / out["seconds"]["plain"]
    assert out["eager_logits_max_abs_diff"] < 1e-5 and out["settings"]["n_layers"] == model.n_layers
