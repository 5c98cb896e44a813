"""dllm's A2D families (a2d_qwen3 / a2d_qwen2 / a2d_llama) and their MDLM / BD3LM samplers against the original
code: goldens from scripts/make_a2d_goldens.py (dllm's modeling files and samplers, transformers 4.57)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mdm_lens import HookedMDM
from mdm_lens.families import FAMILIES, detect_family
from mdm_lens.families._a2d import A2DConfig, A2DLMHeadModel
from mdm_lens.sampling.bd3lm import bd3lm_generate, block_causal
from mdm_lens.sampling.mdlm import mdlm_generate
from mdm_lens.tiny_tokenizer import build_test_tokenizer

from tie_margin import Jittered

FIXTURE = Path(__file__).parent / "fixtures" / "a2d_golden.safetensors"
GOLDENS = load_file(str(FIXTURE))
with safe_open(str(FIXTURE), "pt") as _f:
    META = {k: json.loads(v) for k, v in _f.metadata().items() if k != "source"}
CONFIGS, CASES, PROMPTS, IDS = META["configs"], META["cases"], META["prompts"], META["ids"]
FAMS = sorted(CONFIGS)
CALLS = ("plain", "left", "right", "bd3lm", "bd3lm_cached")
# float32: other CPUs' kernels (AVX-512/AMX, thread counts) reorder sums and move logits of magnitude ~2 by up to
# 5.2e-6 (tests/tie_margin.py); 1e-5 still catches a wrong mask, position or norm (errors 1e-2 and up).
F32_TOL = dict(rtol=0.0, atol=1e-5)
# bfloat16: one ulp at |logit| <= 2.5 is 1.6e-2; a kernel that rounds one accumulation differently moves a logit
# by an ulp, so 2e-2 (about one ulp) is the tightest bound that holds across machines. Here the error is 0.
BF16_TOL = dict(rtol=0.0, atol=2e-2)


def weights(fam: str) -> dict[str, torch.Tensor]:
    pre = f"{fam}.w."
    return {k[len(pre) :]: v for k, v in GOLDENS.items() if k.startswith(pre)}


def native(fam: str, dtype: torch.dtype = torch.float32) -> A2DLMHeadModel:
    spec = detect_family(CONFIGS[fam])
    model = spec.build_model(CONFIGS[fam]).eval()
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in weights(fam).items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    model.tie_weights()
    return model.to(dtype)


@pytest.fixture(scope="module")
def models() -> dict[str, A2DLMHeadModel]:
    return {fam: native(fam) for fam in FAMS}


def _calls(model, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ids, bd = x["input_ids"], x["bd3lm_ids"]
    mask4, pos = block_causal(bd, IDS["bd3lm_block"], IDS["pad"])
    with torch.no_grad():
        out = {
            "plain": model(ids),
            "left": model(ids, attention_mask=x["mask_left"]),
            "right": model(ids, attention_mask=x["mask_right"]),
            "bd3lm": model(bd, attention_mask=mask4, position_ids=pos),
        }
        pm, pp = block_causal(bd[:, :8], IDS["bd3lm_block"], IDS["pad"])
        past = model(bd[:, :8], attention_mask=pm, position_ids=pp, use_cache=True).past_key_values
        out["bd3lm_cached"] = model(
            bd[:, 8:], attention_mask=mask4[:, :, 8:], position_ids=pos[:, 8:], past_key_values=past
        )
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("fam", FAMS)
def test_logits_equal_dllm_reference(fam, dtype):
    """No mask, left / right padding, BD3LM's block-causal mask and its cached block call, f32 and bf16."""
    x = {k[3:]: v for k, v in GOLDENS.items() if k.startswith("in.")}
    got = _calls(native(fam, dtype), x)
    tag = "f32" if dtype == torch.float32 else "bf16"
    for call in CALLS:
        ref = GOLDENS[f"{fam}.{tag}.{call}"]
        assert got[call].dtype == dtype
        torch.testing.assert_close(got[call].float(), ref.float(), **(F32_TOL if tag == "f32" else BF16_TOL), msg=call)


def test_block_causal_mask_is_dllms():
    """Our `block_causal` rebuilds what the reference passed (the goldens' bd3lm logits would catch it too): pad
    columns neither query nor key, blocks in physical columns, positions counting non-pad columns."""
    bd = GOLDENS["in.bd3lm_ids"]
    mask, pos = block_causal(bd, 4, IDS["pad"])
    assert pos[1].tolist() == [0, 0, 0] + list(range(9))
    assert not mask[1, 0, :3].any() and not mask[1, 0, :, :3].any()
    assert mask[0, 0, 5].tolist() == [True] * 8 + [False] * 4  # column 5 (block 1) sees blocks 0 and 1


@pytest.mark.parametrize("i", range(len(CASES)))
def test_sampler_tokens_equal_dllm(models, i):
    """dllm's MDLMSampler / BD3LMSampler tokens, greedy and seeded (Gumbel, random remasking, binomial schedule,
    CFG, suppress / begin-suppress, right shift, EOS early stop, ragged prompts), with margin from ties."""
    case = CASES[i]
    kw = dict(case["kwargs"])
    eos = kw.pop("eos", IDS["eos"])
    prompts = [PROMPTS[r] for r in kw.pop("rows", range(len(PROMPTS)))]
    ids = {"mask_id": IDS["mask"], "eos_id": eos, "bos_id": IDS["bos"]}
    if case["sampler"] == "mdlm":
        fn = mdlm_generate
    else:
        fn, ids["pad_id"] = bd3lm_generate, IDS["pad"]
    seed = case["seed"] if case["seed"] is not None else 0
    torch.manual_seed(seed)
    out = fn(models[case["family"]], prompts, **ids, **kw)
    assert torch.equal(out, GOLDENS[f"case{i}"]), case
    torch.manual_seed(seed)
    jittered = fn(Jittered(models[case["family"]], i), prompts, **ids, **kw)
    assert torch.equal(jittered, out), f"case {case} sits within float round-off of a tie"


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory) -> Path:
    """A hub-layout folder of the qwen3 fixture: config.json + model.safetensors (tied: no lm_head) + tokenizer."""
    folder = tmp_path_factory.mktemp("a2d_qwen3")
    cfg = dict(CONFIGS["a2d_qwen3"])
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in weights("a2d_qwen3").items()}, str(folder / "model.safetensors"))
    tok = build_test_tokenizer([f"w{i}" for i in range(100)], style="dream", vocab_size=128, mask_token_id=127)
    tok.save_pretrained(str(folder))
    return folder


def test_from_pretrained_picks_family_and_sampler(hub_folder, models):
    model = HookedMDM.from_pretrained(str(hub_folder), dtype=torch.float32)
    assert model.spec is FAMILIES["a2d_qwen3"] and model.mask_id == IDS["mask"]
    with torch.no_grad():
        torch.testing.assert_close(model(GOLDENS["in.input_ids"]), GOLDENS["a2d_qwen3.f32.plain"], **F32_TOL)
    special = {"eos": model.tokenizer.eos_token_id, "pad": model.tokenizer.pad_token_id}
    prompts = ["w1 w2 w3 w4", "w5 w6"]
    for variant in ("mdlm", "bd3lm"):
        out = model.generate(prompts, chat=False, variant=variant, max_new_tokens=8, steps=8, block_size=4, seed=0)
        ids = torch.tensor([[1, 2, 3, 4], [special["pad"], special["pad"], 5, 6]])  # w{i} is id i
        attn = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
        fn = mdlm_generate if variant == "mdlm" else bd3lm_generate
        torch.manual_seed(0)
        direct = fn(
            models["a2d_qwen3"],
            ids,
            attn,
            max_new_tokens=8,
            steps=8,
            block_size=4,
            mask_id=IDS["mask"],
            eos_id=special["eos"],
            pad_id=special["pad"],
            bos_id=IDS["bos"],
            left_layout=True,
        )
        assert out.sequences[:, :4].tolist() == ids.tolist() and out.tokens.shape == (2, 8)
        assert torch.equal(out.sequences, direct), variant
    model.config["mdm_lens_sampler"] = {"variant": "bd3lm"}  # a BD3LM checkpoint says so once in config.json
    again = model.generate(prompts, chat=False, max_new_tokens=8, steps=8, block_size=4, seed=0)
    assert torch.equal(again.sequences, direct)
    del model.config["mdm_lens_sampler"]
    with pytest.raises(ValueError, match="variant='bd3' is not an A2D sampler"):
        model.generate(prompts, chat=False, variant="bd3", max_new_tokens=4)


def test_bd3lm_step_clock(models):
    """Every forward announces its step: the prefix forward computes the prefix, the block forwards the block
    (the prefix cached); block_span / block_step / t_block follow the block; pad columns are the padding scope."""
    cfg = dict(CONFIGS["a2d_qwen3"])
    model = HookedMDM(models["a2d_qwen3"], FAMILIES["a2d_qwen3"], None, cfg)
    seen = []

    def hook(act, ctx):
        seen.append(
            (
                ctx.info.step,
                ctx.computed,
                ctx.cached,
                ctx.block_span,
                ctx.info.block_step,
                ctx.t_block,
                ctx.scope_mask("padding").sum().item(),
            )
        )

    heard = []
    with model.hooks({"blocks.0.hook_resid_post": hook}):
        out = bd3lm_generate(
            model,
            PROMPTS,
            max_new_tokens=8,
            steps=8,
            block_size=4,
            eos_id=IDS["eos"],
            pad_id=IDS["pad"],
            on_step=heard.append,
        )
    assert torch.equal(out, GOLDENS["case6"])
    assert [i.step for i in heard] == list(range(8)) and {i.num_steps for i in heard} == {8}  # once per step
    assert len(seen) == 2 + 8  # a prefix forward per block, 4 steps per block
    assert seen[0] == (0, (0, 8), [], (8, 12), 0, 0.0, 3 + 5)  # prompts of 5 and 3 left-padded to 8
    assert seen[1][:6] == (0, (8, 12), [(0, 8)], (8, 12), 0, 1.0)
    assert seen[5][:5] == (4, (0, 12), [], (12, 16), 0)
    assert seen[6][:6] == (4, (12, 16), [(0, 12)], (12, 16), 0, 1.0) and seen[9][4] == 3
    assert [s[0] for s in seen] == [0, 0, 1, 2, 3, 4, 4, 5, 6, 7]


def test_mdlm_step_clock(models):
    """MDLM announces one step per forward, its semi-autoregressive block, and no block span (the whole canvas is
    bidirectional); num_steps is the number of forwards the run makes."""
    model = HookedMDM(models["a2d_qwen3"], FAMILIES["a2d_qwen3"], None, dict(CONFIGS["a2d_qwen3"]))
    seen = []
    with model.hooks({"blocks.0.hook_resid_post": lambda act, ctx: seen.append(ctx.info)}):
        out = mdlm_generate(model, PROMPTS, max_new_tokens=8, block_size=4, steps=8, eos_id=IDS["eos"])
    assert torch.equal(out, GOLDENS["case0"])
    assert [i.step for i in seen] == list(range(8)) and {i.num_steps for i in seen} == {8}
    assert [i.block for i in seen] == [0] * 4 + [1] * 4 and all(i.block_span is None for i in seen)
    assert {(i.prompt_length, i.gen_length, i.sampler) for i in seen} == {(5, 8, "mdlm")}


def test_sites_cache_and_hooks(models):
    for fam in FAMS:
        model = HookedMDM(models[fam], FAMILIES[fam], None, dict(CONFIGS[fam]))
        ids = GOLDENS["in.input_ids"]
        with torch.no_grad():
            before = model(ids)
        logits, cache = model.run_with_cache(ids)  # caches the pattern too: the eager path, equal to round-off
        torch.testing.assert_close(logits, GOLDENS[f"{fam}.f32.plain"], **F32_TOL)
        d_head = CONFIGS[fam].get("head_dim", 8)
        assert cache["blocks.1.attn.hook_rot_q"].shape == (2, 12, 4, d_head)
        assert cache["blocks.0.hook_mlp_out"].shape == (2, 12, 32)
        zero = {"blocks.1.hook_resid_post": lambda act, ctx: act * 0}
        with model.hooks(zero), torch.no_grad():
            assert not torch.allclose(model(ids), before)
        with torch.no_grad():
            torch.testing.assert_close(model(ids), before, rtol=0, atol=0)  # no hook left behind


def test_bad_inputs_are_named():
    with pytest.raises(NotImplementedError, match="rope_type 'yarn'"):
        A2DConfig.from_dict({**CONFIGS["a2d_llama"], "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "llama")
    model = native("a2d_qwen2")
    with pytest.raises(ValueError, match=r"must be \[2, 12\]"):
        model(GOLDENS["in.input_ids"], attention_mask=torch.ones(2, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="contains the mask token id 127"):
        mdlm_generate(model, [[1, 127]], mask_id=127, eos_id=120, max_new_tokens=4, steps=4, block_size=4)
    with pytest.raises(ValueError, match="unknown remasking 'top'"):
        bd3lm_generate(model, [[1, 2]], mask_id=127, pad_id=121, remasking="top", max_new_tokens=4)


def test_hub_keys_match_the_converted_checkpoint():
    for fam in FAMS:
        spec = FAMILIES[fam]
        cfg = A2DConfig.from_dict(CONFIGS[fam], fam.split("_")[1])
        assert spec.hub_keys(cfg) == sorted(weights(fam)), fam
