"""mdm_lens.likelihood against goldens from ML-GSAI/LLaDA's get_log_likelihood (scripts/make_likelihood_golden.py)."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mdm_lens import HookedMDM
from mdm_lens.likelihood import log_likelihood, log_likelihoods, response_nll, response_nlls

GOLDEN = Path(__file__).parent / "fixtures" / "likelihood_golden.safetensors"


def _load():
    with safe_open(str(GOLDEN), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return json.loads(meta["cases"]), json.loads(meta["batch"]), tensors


CASES, BATCH, T = _load()


@pytest.fixture(scope="module")
def nets():
    """The golden's models: the tiny seeded ones, unmodified (no tokenizer needed: ids only)."""
    from mdm_lens.testing import tiny_config

    return {f: HookedMDM.from_config(tiny_config(f), seed=0).eval() for f in ("llada", "dream")}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


@pytest.mark.parametrize("i", range(len(CASES)))
def test_equals_reference_seeded(nets, i):
    c = CASES[i]
    before = torch.get_rng_state()
    got = log_likelihood(
        nets[c["family"]],
        T[f"case{i}_prompt"],
        T[f"case{i}_answer"],
        mc_num=c["mc_num"],
        batch_size=c["batch_size"],
        cfg_scale=c["cfg_scale"],
        mask_id=319,
        seed=c["seed"],
    )
    assert abs(got - float(T[f"case{i}_ll"])) <= 1e-6 * max(1.0, abs(got)), (got, float(T[f"case{i}_ll"]))
    assert torch.equal(torch.get_rng_state(), before)  # a local generator: global RNG untouched
    packed = log_likelihoods(
        nets[c["family"]],
        [(T[f"case{i}_prompt"], T[f"case{i}_answer"])],
        c["mc_num"],
        c["batch_size"],
        c["cfg_scale"],
        seed=c["seed"],
        max_rows=4 * c["batch_size"],
    )[0]
    assert _rel(packed, float(T[f"case{i}_ll"])) <= 1e-5  # several mini-batches in one forward


@pytest.mark.parametrize("i", [0, 3, 6])
def test_equals_reference_global_rng(nets, i):
    c = CASES[i]
    torch.manual_seed(c["seed"])
    got = log_likelihood(
        nets[c["family"]],
        T[f"case{i}_prompt"],
        T[f"case{i}_answer"],
        mc_num=c["mc_num"],
        batch_size=c["batch_size"],
        cfg_scale=c["cfg_scale"],
    )
    assert _rel(got, float(T[f"case{i}_ll"])) <= 1e-6


def test_dream_shift_matters(nets):
    """Without the shift the Dream estimate is a different number: the golden pins the shift."""
    i = next(j for j, c in enumerate(CASES) if c["family"] == "dream")
    c, model = CASES[i], nets["dream"]
    spec = model.spec
    model.spec = dataclasses.replace(spec, logits_shift=False)
    try:
        unshifted = log_likelihood(
            model,
            T[f"case{i}_prompt"],
            T[f"case{i}_answer"],
            mc_num=c["mc_num"],
            batch_size=c["batch_size"],
            seed=c["seed"],
        )
    finally:
        model.spec = spec
    assert _rel(unshifted, float(T[f"case{i}_ll"])) > 1e-3


def _batch_pairs():
    return [(T[f"batch{j}_prompt"], T[f"batch{j}_answer"]) for j in range(len(BATCH["lengths"]))]


def test_batched_pairs_equal_reference(nets):
    kw = dict(mc_num=BATCH["mc_num"], batch_size=BATCH["batch_size"])
    want = T["batch_seeded_ll"].tolist()
    one_per_forward = log_likelihoods(nets["llada"], _batch_pairs(), seed=BATCH["seeds"], **kw)
    assert max(_rel(a, b) for a, b in zip(one_per_forward, want)) <= 1e-6
    packed = log_likelihoods(nets["llada"], _batch_pairs(), seed=BATCH["seeds"], max_rows=64, **kw)  # right-padded
    assert max(_rel(a, b) for a, b in zip(packed, want)) <= 1e-5
    # one pair alone = the same pair inside a batch (seeded per pair)
    alone = log_likelihood(nets["llada"], *_batch_pairs()[2], seed=BATCH["seeds"][2], **kw)
    assert alone == one_per_forward[2]
    torch.manual_seed(BATCH["sequential_seed"])
    sequential = log_likelihoods(nets["llada"], _batch_pairs(), **kw)
    assert max(_rel(a, b) for a, b in zip(sequential, T["batch_sequential_ll"].tolist())) <= 1e-6


def test_bad_input_is_named(nets):
    p, a = T["case0_prompt"], T["case0_answer"]
    with pytest.raises(ValueError, match="multiple of batch_size"):
        log_likelihood(nets["llada"], p, a, mc_num=20, batch_size=16)
    with pytest.raises(ValueError, match="no tokens"):
        log_likelihood(nets["llada"], p, torch.tensor([], dtype=torch.long), mc_num=4, batch_size=4)
    with pytest.raises(ValueError, match="mask token id 319"):
        log_likelihood(nets["llada"], p, torch.tensor([5, 319]), mc_num=4, batch_size=4)
    with pytest.raises(ValueError, match="no tokenizer"):
        log_likelihood(nets["llada"], "hello", "world", mc_num=4, batch_size=4)
    with pytest.raises(ValueError, match="2 seeds for 1 pairs"):
        log_likelihoods(nets["llada"], [(p, a)], mc_num=4, batch_size=4, seed=[1, 2])


def test_response_nll_is_per_token(nets):
    p, a = T["case0_prompt"], T["case0_answer"]
    ll = log_likelihood(nets["llada"], p, a, mc_num=16, batch_size=8, seed=3)
    assert response_nll(nets["llada"], p, a, mc_num=16, batch_size=8, seed=3) == pytest.approx(-ll / a.numel())


@pytest.fixture(scope="module")
def organism():
    return HookedMDM.from_pretrained("tiny-if").eval()


def test_own_greedy_output_more_likely_than_shuffled(organism):
    """A trained model's own low-temperature answer scores a lower NLL than the same tokens shuffled."""
    prompts = [
        "Write a short note about the sea in all lowercase letters.",
        "Describe a city at night. Do not use any commas.",
    ]
    out = organism.generate(prompts, seed=0, gen_length=32, steps=16, block_length=32)
    from mdm_lens.generation import special_ids

    stops = {v for k, v in special_ids(organism).items() if k in ("eos", "eot") and v is not None}
    pairs, shuffled = [], []
    gen = torch.Generator().manual_seed(0)
    for i, row in enumerate(out.tokens):
        row = row.tolist()
        cut = next((k for k, t in enumerate(row) if t in stops), len(row))
        resp = torch.tensor(row[:cut])
        assert resp.numel() >= 5, organism.tokenizer.decode(resp)
        pairs.append((prompts[i], resp))
        shuffled.append((prompts[i], resp[torch.randperm(resp.numel(), generator=gen)]))
    own = response_nlls(organism, pairs, mc_num=32, batch_size=16)
    mixed = response_nlls(organism, shuffled, mc_num=32, batch_size=16)
    assert all(math.isfinite(x) and x > 0 for x in own + mixed)
    for o, m in zip(own, mixed):
        assert o + 0.5 < m, (own, mixed)


def test_strings_follow_the_chat_template(organism):
    """A string prompt is the chat-templated prompt generate() uses; a string answer is tokenized plainly."""
    from mdm_lens.prompts import encode_prompts

    prompt, answer = "Say hello.", "hello there"
    ids, _ = encode_prompts([prompt], organism.tokenizer, chat=True, pad_id=0)
    ans = torch.tensor(organism.tokenizer(answer, add_special_tokens=False)["input_ids"])
    a = log_likelihood(organism, prompt, answer, mc_num=8, batch_size=8, seed=1)
    b = log_likelihood(organism, ids[0], ans, mc_num=8, batch_size=8, seed=1)
    assert a == b
