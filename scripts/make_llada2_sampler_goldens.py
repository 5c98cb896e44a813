"""Regenerate tests/fixtures/llada2_sampler_goldens.safetensors from the ORIGINAL LLaDA2 generate.

    python scripts/make_llada2_sampler_goldens.py --ref DIR [--ref21 DIR] [--dllm-src DIR] [--out FILE]

`--ref`: a folder holding the hub's `modeling_llada2_moe.py` + `configuration_llada2_moe.py` (ZHZisZZ/dllm
`dllm/pipelines/llada2/models/`, the code of inclusionAI/LLaDA2.0-mini). `--ref21`: the same for LLaDA2.1
(`dllm/pipelines/llada21/models/`: `modeling_llada21_moe.py` + `configuration_llada21_moe.py`); its `generate`
(token editing) runs on the same weights for the cases `CASES21`, stored as `c21_{i}.*`. `--dllm-src`: optional, a folder
holding dllm's source tree (`dllm/pipelines/llada2/sampler.py`, `dllm/core/samplers/base.py`,
`dllm/core/schedulers/`); its `LLaDA2Sampler` is then run on the same cases and compared too (printed, not
stored). The code targets transformers 4.x: run this in such an environment (the project's reference venv).
This repository contains none of it: the script only imports it.

What it does, per case (tiny seeded model, weights rounded to bf16; lm_head scaled so that the threshold
fires on some columns): runs the hub's `LLaDA2MoeModelLM.generate` (in float32 through a shim whose forward
casts the bfloat16 block mask to float32 -- the hub's SDPA path refuses a bf16 mask beside float32 queries;
0 and -inf are exact in both -- and in bfloat16 as the hub runs it), records every forward's input ids and
the logits of the block being denoised, and runs `mdm_lens.sampling.llada2_generate` on the same model to
check token equality here. Stored: the weights, per case the prompt, the hub's answer, the forwards' inputs
and block logits (tests replay them into our sampler), and the tie margin (`tests/tie_margin.py`): whether
the hub's answer survives logit jitter of 1e-5 (float32 cases must; tests assert it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from llada2_sampler_cases import CASES, CASES21, CONFIG, LM_HEAD_SCALE  # noqa: E402
from tie_margin import DELTA  # noqa: E402

from mdm_lens.sampling.llada2 import llada2_generate, reference_answer  # noqa: E402
from mdm_lens.sampling.llada21 import llada21_generate  # noqa: E402


def load_reference(folder: str, version: str = "llada2"):
    pkg = types.ModuleType(f"{version}_reference")
    pkg.__path__ = [folder]
    sys.modules[f"{version}_reference"] = pkg
    cfg = importlib.import_module(f"{version}_reference.configuration_{version}_moe")
    mod = importlib.import_module(f"{version}_reference.modeling_{version}_moe")
    return cfg.LLaDA2MoeConfig, mod.LLaDA2MoeModelLM


def build_model(config_cls, model_cls) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = config_cls(**CONFIG)
    cfg._attn_implementation = "sdpa"  # the hub's default (its eager path cannot take the block mask)
    model = model_cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        model.lm_head.weight.mul_(LM_HEAD_SCALE)
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


class Shim:
    """`self` for the hub's unbound `generate`: records every forward, optionally jitters its logits."""

    def __init__(self, model, jitter_seed: int | None = None):
        self.model, self.calls = model, []
        self.device = next(model.parameters()).device
        self._sample_with_temperature_topk_topp = model._sample_with_temperature_topk_topp
        self._get_num_transfer_tokens = model._get_num_transfer_tokens
        self.gen = None if jitter_seed is None else torch.Generator().manual_seed(jitter_seed)

    def forward(self, ids, attention_mask, position_ids):
        dtype = next(self.model.parameters()).dtype
        out = self.model(ids, attention_mask=attention_mask.to(dtype), position_ids=position_ids)
        if self.gen is not None:
            noise = (torch.rand(out.logits.shape, generator=self.gen) * 2 - 1) * DELTA
            out.logits = out.logits + noise.to(out.logits.dtype)
        self.calls.append((ids.clone(), out.logits))
        return out


def hub_run(model_cls, model, case: dict, jitter_seed: int | None = None):
    torch.manual_seed(case["seed"])
    shim = Shim(model, jitter_seed)
    answer = model_cls.generate(shim, torch.tensor(case["prompt"]), **case["settings"])
    return answer[0], shim.calls


def ours(model, case: dict, fn=llada2_generate) -> torch.Tensor:
    def forward(ids, attention_mask, position_ids):
        return model(ids, attention_mask=attention_mask, position_ids=position_ids).logits

    forward.dtype = next(model.parameters()).dtype
    torch.manual_seed(case["seed"])
    s = dict(case["settings"])
    seqs = fn(forward, torch.tensor(case["prompt"]), **s)
    return reference_answer(seqs, len(case["prompt"][0]), s["eos_id"])[0]


def store(tensors: dict, key: str, case: dict, answer: torch.Tensor, calls: list) -> None:
    """The prompt, the reference's answer, and its forwards' input ids and block logits (for replay)."""
    width = max(c[0].shape[1] for c in calls)
    inputs = torch.full((len(calls), width), -1, dtype=torch.long)
    for j, (ids, _) in enumerate(calls):
        inputs[j, : ids.shape[1]] = ids[0]
    bl = case["settings"]["block_length"]
    tensors[f"{key}.prompt"] = torch.tensor(case["prompt"])
    tensors[f"{key}.answer"] = answer.contiguous()
    tensors[f"{key}.inputs"] = inputs
    tensors[f"{key}.logits"] = torch.stack([lg[:, -bl:] for _, lg in calls]).contiguous()


def run21(folder: str, base: torch.nn.Module, tensors: dict) -> list[dict]:
    """LLaDA2.1's hub generate (editing) on the same weights: the cases of CASES21."""
    config_cls, model_cls = load_reference(folder, "llada21")
    cfg = config_cls(**CONFIG)
    cfg._attn_implementation = "sdpa"
    model21 = model_cls(cfg).eval()
    model21.load_state_dict(base.float().state_dict())
    meta = []
    for i, case in enumerate(CASES21):
        model = model21.to(torch.bfloat16) if case["dtype"] == "bfloat16" else model21.float()
        answer, calls = hub_run(model_cls, model, case)
        mine = ours(model, {**case, "settings": without(case["settings"], "steps", "minimal_topk")}, llada21_generate)
        margin = all(torch.equal(hub_run(model_cls, model, case, jitter_seed=j)[0], answer) for j in range(3))
        store(tensors, f"c21_{i}", case, answer, calls)
        print(
            f"2.1 case {i} {case['name']:<22} {case['dtype']:<8} forwards {len(calls):>2}  answer {len(answer):>2} "
            f"tokens  ours equal: {torch.equal(mine, answer)}  tie margin: {margin}"
        )
        meta.append({"name": case["name"], "margin": margin, "ours_equal": bool(torch.equal(mine, answer))})
    return meta


def without(settings: dict, *keys: str) -> dict:
    return {k: v for k, v in settings.items() if k not in keys}


def dllm_run(src: str, model, case: dict) -> torch.Tensor:
    for name in ("dllm", "dllm.core", "dllm.core.samplers", "dllm.pipelines", "dllm.pipelines.llada2"):
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [str(Path(src, *name.split(".")))]
            sys.modules[name] = m
    sampler_mod = importlib.import_module("dllm.pipelines.llada2.sampler")
    s = case["settings"]
    tok = types.SimpleNamespace(mask_token_id=s["mask_id"], eos_token_id=s["eos_id"])

    class Fwd(torch.nn.Module):  # dllm passes the bf16 mask as the hub does; cast as in Shim
        device = torch.device("cpu")

        def forward(self, ids, attention_mask, position_ids):
            dtype = next(model.parameters()).dtype
            return model(ids, attention_mask=attention_mask.to(dtype), position_ids=position_ids)

    sampler = sampler_mod.LLaDA2Sampler(model=Fwd(), tokenizer=tok)
    torch.manual_seed(case["seed"])
    kw = {k: v for k, v in s.items() if k not in ("eos_id", "mask_id")}
    kw["max_new_tokens"], kw["block_size"], kw["steps_per_block"] = (
        kw.pop("gen_length"),
        kw.pop("block_length"),
        kw.pop("steps"),
    )
    return sampler.sample([torch.tensor(p) for p in case["prompt"]], **kw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True)
    ap.add_argument("--ref21", default=None)
    ap.add_argument("--dllm-src", default=None)
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/llada2_sampler_goldens.safetensors"))
    args = ap.parse_args()
    config_cls, model_cls = load_reference(args.ref)
    base = build_model(config_cls, model_cls)
    tensors = {f"w.{k}": v.to(torch.bfloat16).contiguous() for k, v in base.state_dict().items()}
    meta = []
    for i, case in enumerate(CASES):
        model = base.to(torch.bfloat16) if case["dtype"] == "bfloat16" else base.float()
        answer, calls = hub_run(model_cls, model, case)
        mine = ours(model, case)
        jittered = [hub_run(model_cls, model, case, jitter_seed=j)[0] for j in range(3)]
        margin = all(torch.equal(j, answer) for j in jittered)
        n = len(case["prompt"][0])
        store(tensors, f"case{i}", case, answer, calls)
        line = (
            f"case {i} {case['name']:<22} {case['dtype']:<8} forwards {len(calls):>2}  answer {len(answer):>2} "
            f"tokens  ours equal: {torch.equal(mine, answer)}  tie margin: {margin}"
        )
        if args.dllm_src:
            seqs = dllm_run(args.dllm_src, model, case)
            theirs = reference_answer(seqs[:, : n + case["settings"]["gen_length"]], n, case["settings"]["eos_id"])[0]
            line += f"  dllm sampler equal: {torch.equal(theirs, answer)}"
        print(line)
        meta.append({"name": case["name"], "margin": margin, "ours_equal": bool(torch.equal(mine, answer))})
    base.float()
    meta21 = run21(args.ref21, base, tensors) if args.ref21 else []
    metadata = {"config": json.dumps(CONFIG), "cases": json.dumps(meta), "cases21": json.dumps(meta21)}
    save_file(tensors, args.out, metadata=metadata)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
