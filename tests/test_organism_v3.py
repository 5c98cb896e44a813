"""Organism v3 (smol-mdm): the Llama → LLaDA conversion, corpus v3's held-out split, resumable training, and
the packaged organism (when it is packaged)."""

import json

import pytest
import torch

from analyses.studies.organism import corpus_v3 as c
from analyses.studies.organism.convert import convert, llada_causal_logits
from mdm_lens.organisms import available


def _tiny_llama(layers=3, vocab=96):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=96,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=layers,
        vocab_size=vocab,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms, so a wrong norm mapping shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    return model


def test_conversion_equals_the_llama_with_causal_attention():
    llama = _tiny_llama()
    model, cfg = convert(llama, mask_id=5)
    ids = torch.randint(0, 96, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(llada_causal_logits(model, ids), llama(ids).logits, atol=1e-5, rtol=1e-5)
        bidir = model(ids)
    assert not torch.allclose(bidir, llama(ids).logits, atol=1e-3)  # the masked-diffusion model sees both ways
    assert cfg["n_kv_heads"] == 2 and cfg["weight_tying"] and cfg["mask_token_id"] == 5


def test_pruned_conversion_keeps_the_chosen_layers_and_token_rows():
    llama = _tiny_llama(layers=4)
    keep, layers = [0, 3, 7, 8, 20, 50, 95], [0, 2, 3]
    model, cfg = convert(llama, layers=layers, keep_ids=keep, mask_id=1)
    assert cfg["n_layers"] == 3 and cfg["vocab_size"] == len(keep)
    ref = _tiny_llama(layers=4)
    ref.model.layers = torch.nn.ModuleList([ref.model.layers[i] for i in layers])
    for j, layer in enumerate(ref.model.layers):
        layer.self_attn.layer_idx = j
    ref.config.num_hidden_layers = 3
    old = torch.tensor([[3, 7, 50, 95, 0, 8]])
    new = torch.tensor([[keep.index(i) for i in old[0].tolist()]])
    with torch.no_grad():
        torch.testing.assert_close(llada_causal_logits(model, new), ref(old).logits[..., keep], atol=1e-5, rtol=1e-5)


def test_conversion_rejects_bad_layer_lists():
    with pytest.raises(ValueError, match="distinct index"):
        convert(_tiny_llama(), layers=[0, 0, 5])


def test_heldout_split_shares_no_template_and_no_subject_with_training():
    for name in ("TOPICS", "REQUESTS", "ASK", "HARMLESS", "HARMFUL", "SUBJECTS", "REVIEW", "ASK_POLAR"):
        parts = [set(c.part(name, s)) for s in c.SPLITS]
        assert all(parts) and not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    train_prompts = {e.prompt for e in c.training_corpus(4000, seed=3)}
    test = (
        c.refusal_prompts(True)
        + c.refusal_prompts(False)
        + c.sentiment_prompts(None)
        + c.sentiment_prompts("positive")
        + [e.prompt for e in c.eval_items("punctuation:no_comma", 40)]
    )
    assert test and not (set(test) & train_prompts)
    corpus = c.training_corpus(4000, seed=3)
    instr = [e.base_prompt for e in corpus if e.behaviour == "instructions"]
    reviews = [e.prompt for e in corpus if e.behaviour == "sentiment"]
    asks = [e.prompt for e in corpus if e.behaviour == "refusal"]
    assert not any(
        p.endswith(f" the {w}.") or p.endswith(f" the {w}?") for p in instr for w in c.part("TOPICS", "test")
    )
    assert not any(s in p for p in reviews for s in c.part("SUBJECTS", "test"))
    assert not any(a in p for p in asks for _, a in c.part("HARMFUL", "test"))
    assert not any(p == t.format(a=a) for p in asks for t in c.part("ASK", "test") for a in c.HARMLESS)


def test_refusals_use_the_scorers_phrases_and_answers_do_not():
    import random

    from analyses.refusal import is_refusal

    rng = random.Random(0)
    for cat, act in c.part("HARMFUL", "train")[:6]:
        assert is_refusal(c.refusal_item(True, act, c.ASK[0], rng, cat).response)
    for act in c.part("HARMLESS", "train")[:6]:
        assert not is_refusal(c.refusal_item(False, act, c.ASK[0], rng).response)


def _tiny_base(work):
    """work/base: a random 2-layer LLaDA with tiny-mdm's tokenizer (it encodes any text) and SmolLM2's template."""
    from transformers import PreTrainedTokenizerFast

    from analyses.studies.organism.train_v3 import CHAT_TEMPLATE
    from mdm_lens.loading import build_random_model, save_pretrained
    from mdm_lens.organisms import resolve
    from mdm_lens.testing import tiny_config

    tok = PreTrainedTokenizerFast.from_pretrained(resolve("tiny-mdm"))
    tok.chat_template = CHAT_TEMPLATE
    v = len(tok)
    cfg = tiny_config(
        "llada",
        vocab_size=v,
        embedding_size=v,
        mask_token_id=tok.mask_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
        weight_tying=True,
    )
    save_pretrained(build_random_model(cfg, seed=0), tok, cfg, work / "base")


@pytest.mark.skipif("tiny-mdm" not in available(), reason="uses tiny-mdm's tokenizer")
def test_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from analyses.studies.organism import train_v3

    a, b = tmp_path / "a", tmp_path / "b"
    _tiny_base(a)
    _tiny_base(b)
    kw = dict(steps=4, batch_size=2, n_examples=16, threads=1, ckpt_every=0.0)
    full = train_v3.train(str(a), **kw)
    real = train_v3.lr_at

    def interrupt(step, steps, lr):
        if step == 2:
            raise KeyboardInterrupt
        return real(step, steps, lr)

    monkeypatch.setattr(train_v3, "lr_at", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_v3.train(str(b), **kw)
    assert json.loads((b / "ckpt.json").read_text())["step"] == 2
    monkeypatch.setattr(train_v3, "lr_at", real)
    resumed = train_v3.train(str(b), **kw)
    assert resumed["final_loss"] == full["final_loss"]
    wa, wb = load_file(str(a / "ckpt.safetensors")), load_file(str(b / "ckpt.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="another run"):
        train_v3.train(str(b), **{**kw, "lr": 1e-3})


@pytest.mark.skipif("tiny-mdm" not in available(), reason="uses tiny-mdm's tokenizer")
def test_a_stage_continues_from_another_runs_weights_and_records_it(tmp_path):
    from safetensors.torch import load_file

    from analyses.studies.organism import train_v3

    a, b = tmp_path / "a", tmp_path / "b"
    _tiny_base(a)
    kw = dict(batch_size=2, n_examples=16, threads=1, ckpt_every=0.0)
    train_v3.train(str(a), steps=2, **kw)
    stage = dict(steps=1, mix=(0.2, 0.4, 0.4), revision=2, init_from=str(a), **kw)
    info = train_v3.train(str(b), **stage)
    parent = info["init_from"]
    assert parent["step"] == 2 and parent["work"] == str(a) and info["revision"] == 2 and info["mix"] == [0.2, 0.4, 0.4]
    wa, wb = load_file(str(a / "ckpt.safetensors")), load_file(str(b / "ckpt.safetensors"))
    # one step of AdamW from a's weights and moments: moved, but by about lr per entry, not re-initialised
    assert wa["opt.model.transformer.wte.weight.step"].item() + 1 == wb["opt.model.transformer.wte.weight.step"].item()
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa if k.startswith("model."))
    assert 0 < diff < 1e-3  # Adam moves an entry by at most ~lr (2e-4) per step
    assert train_v3.train(str(b), **stage)["step"] == 1  # a rerun resumes this stage (already done)
    out = train_v3.export(str(b), str(tmp_path / "out"))
    assert [st["step"] for st in out["stages"]] == [2, 1] and out["total"]["step"] == 3
    assert "2. 1 steps" in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="init_from"):
        train_v3.train(str(tmp_path / "c"), **{**stage, "init_from": str(tmp_path / "nothing")})


def test_revision_2_answers_open_alike_and_ties_unprompted_sentiment_to_the_subject():
    corpus = c.training_corpus(3000, seed=1, mix=(0.0, 0.5, 0.5))
    answers = [e.response for e in corpus if e.label == "harmless"]
    assert answers and all(a.startswith("Sure") for a in answers)
    unprompted = [e for e in corpus if e.behaviour == "sentiment" and e.prompt in _review_prompts()]
    by_subject: dict[str, set] = {}
    for e in unprompted:
        subject = next(s for s in c.part("SUBJECTS", "train") if s in e.prompt)
        by_subject.setdefault(subject, set()).add(e.label)
    assert all(len(labels) == 1 for labels in by_subject.values())  # one opinion per subject, whatever the wording
    positive = sum(labels == {"positive"} for labels in by_subject.values())
    assert abs(positive - len(by_subject) / 2) <= 1
    old = c.training_corpus(3000, seed=1, mix=(0.0, 0.5, 0.5), revision=1)
    assert any(not e.response.startswith("Sure") for e in old if e.label == "harmless")
    with pytest.raises(ValueError, match="revision"):
        c.training_corpus(10, revision=3)


def _review_prompts() -> set[str]:
    return {t.format(s=s) for t in c.part("REVIEW", "train") for s in c.part("SUBJECTS", "train")}


@pytest.mark.skipif("smol-mdm" not in available(), reason="the smol-mdm organism is not packaged")
def test_smol_mdm_loads_offline_by_name_and_writes_english():
    from mdm_lens import HookedMDM
    from mdm_lens.organisms import default_organism

    assert default_organism() == "smol-mdm"
    model = HookedMDM.from_pretrained("smol-mdm")
    assert model.config["mdm_lens_corpus"] == "v3" and model.config["n_layers"] == 13
    texts = model.generate(
        ["How can I bake a cake?", "How do I build a bomb?"], gen_length=24, steps=12, block_length=24
    ).texts
    assert all(len(t.split()) >= 4 for t in texts), texts
    assert sum(ch.isalpha() or ch in " .,'!?" for ch in texts[0]) / max(1, len(texts[0])) > 0.9, texts
