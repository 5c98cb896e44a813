"""Train the organism with LLaDA's SFT objective: mask response tokens with prob t ~ U(eps, 1), never the
prompt; cross-entropy on masked tokens weighted 1/t, normalised by each row's response length.

Resumable: every `ckpt_every` seconds the weights, the AdamW moments and the loss history are written
atomically (safetensors + JSON, no pickle) to `work`; a restart with the same arguments continues from there.
Batches and masks are drawn from per-step seeds, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mdm_lens.safefile import save_safetensors_atomic, write_text_atomic

from .behaviours import training_corpus
from .tokenizer import build_tokenizer

RESPONSE_LEN = 48
ARCH = dict(
    d_model=256, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=512, max_sequence_length=256, rope_theta=10000.0
)
SAMPLER = {
    "gen_length": RESPONSE_LEN,
    "steps": RESPONSE_LEN // 2,
    "block_length": RESPONSE_LEN,
    "temperature": 0.0,
    "remasking": "low_confidence",
}


def encode(tok, examples) -> list[tuple[list[int], list[int]]]:
    """(prompt ids via the chat template, response ids + <|eot_id|> + EOS padding to RESPONSE_LEN)."""
    eot, eos = tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id
    chats = tok.apply_chat_template(
        [[{"role": "user", "content": ex.prompt}] for ex in examples], add_generation_prompt=True, tokenize=False
    )
    prompts = tok(chats, add_special_tokens=False)["input_ids"]
    responses = tok([ex.response for ex in examples], add_special_tokens=False)["input_ids"]
    rows = []
    for p, r in zip(prompts, responses):
        r = list(r)[: RESPONSE_LEN - 1] + [eot]
        rows.append((list(p), r + [eos] * (RESPONSE_LEN - len(r))))
    return rows


def batch(rows, eos: int):
    """Right-pad with EOS (part of the response, as LLaDA SFT does); returns ids and prompt lengths."""
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), eos, dtype=torch.long)
    plen = torch.tensor([len(p) for p, _ in rows])
    for i, (p, r) in enumerate(rows):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
    return ids, plen


def masked_diffusion_loss(model, ids, plen, mask_id: int, eps: float = 1e-3, generator=None):
    b, L = ids.shape
    t = (1 - eps) * torch.rand(b, generator=generator) + eps
    resp = torch.arange(L)[None, :] >= plen[:, None]
    masked = (torch.rand(b, L, generator=generator) < t[:, None]) & resp
    noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
    logits = model(noisy)
    ce = F.cross_entropy(logits[masked], ids[masked], reduction="none")
    weight = (1.0 / t)[:, None].expand(b, L)[masked]
    resp_len = resp.sum(1).clamp_min(1)[:, None].expand(b, L)[masked].float()
    return (ce * weight / resp_len).sum() / b


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 10% of `lr`."""
    warm = max(1, steps // 20)
    return lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))


def _save_checkpoint(work: Path, model, opt, state: dict) -> None:
    """Weights + AdamW moments in one safetensors file, the rest in JSON; both replaced atomically."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    for i, s in opt.state_dict()["state"].items():
        for key, val in s.items():
            tensors[f"opt.{names[i]}.{key}"] = val.detach().reshape(val.shape).contiguous()
    save_safetensors_atomic(tensors, work / "ckpt.safetensors", None)
    write_text_atomic(json.dumps(state), work / "ckpt.json")


def _load_checkpoint(work: Path, model, opt) -> dict | None:
    from safetensors.torch import load_file

    if not ((work / "ckpt.json").is_file() and (work / "ckpt.safetensors").is_file()):
        return None
    state = json.loads((work / "ckpt.json").read_text())
    tensors = load_file(str(work / "ckpt.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    names = [n for n, _ in model.named_parameters()]
    sd = opt.state_dict()
    sd["state"] = {
        i: {key: tensors[f"opt.{n}.{key}"] for key in ("step", "exp_avg", "exp_avg_sq")}
        for i, n in enumerate(names)
        if f"opt.{n}.exp_avg" in tensors
    }
    opt.load_state_dict(sd)
    return state


def model_config(tok, arch: dict) -> dict:
    """The LLaDA config.json of the organism: `arch` sizes, the tokenizer's ids, the recommended sampler."""
    from mdm_lens.families import tiny_config

    vocab = len(tok)
    cfg = tiny_config(
        "llada",
        vocab_size=vocab,
        embedding_size=vocab,
        mask_token_id=tok.mask_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        **arch,
    )
    cfg["mdm_lens_sampler"] = SAMPLER
    cfg["mdm_lens_corpus"] = "v2"  # organism tasks draw prompts from the corpus that trained it
    return cfg


def train(
    out: str,
    work: str,
    steps: int = 1600,
    batch_size: int = 32,
    lr: float = 3e-3,
    n_examples: int = 60000,
    seed: int = 0,
    log_every: int = 50,
    ckpt_every: float = 180.0,
    threads: int = 1,
    arch: dict | None = None,
    vocab_size: int = 1280,
    init_from: str | None = None,
) -> dict:
    """Train (or resume) the organism and save it in hub layout to `out`; returns the training record.

    `work`: the checkpoint folder (outside the repository; a rerun with the same arguments resumes from it).
    `init_from`: a model folder written by an earlier run (weights, tokenizer, `training.json`): this run is a
    further stage from there (fresh optimizer, its own warm-up and cosine schedule), recorded in `stages`."""
    from mdm_lens.loading import build_random_model, save_pretrained

    arch = dict(ARCH if arch is None else arch)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.time()
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    examples = training_corpus(n_examples, seed=seed)
    tok, prior_stages = _tokenizer(work_dir, examples, vocab_size, init_from)
    cfg = model_config(tok, arch)
    model = build_random_model(cfg, seed=seed).train()
    if init_from is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(init_from) / "model.safetensors")))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    run = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "n_examples": n_examples,
        "seed": seed,
        "arch": arch,
        "vocab_size": vocab_size,
    }
    if prior_stages:
        run["init_from"] = {k: prior_stages[-1].get(k) for k in ("steps", "lr", "seed", "final_loss")}
    state = _load_checkpoint(work_dir, model, opt)
    if state is not None and state["run"] != run:
        raise ValueError(
            f"the checkpoint in {work_dir} is from another run ({state['run']}), not {run}; "
            f"pass another work folder or delete {work_dir / 'ckpt.json'} to start over"
        )
    state = state or {"run": run, "step": 0, "history": [], "seconds": 0.0}
    prior = state["seconds"]
    _loop(
        model,
        opt,
        tok,
        encode(tok, examples),
        state,
        work_dir,
        t0,
        stage=len(prior_stages),
        log_every=log_every,
        ckpt_every=ckpt_every,
    )
    model.eval()
    Path(out).mkdir(parents=True, exist_ok=True)
    save_pretrained(model, tok, cfg, out)
    history = state["history"]
    info = run | {
        "final_loss": sum(history[-50:]) / max(1, len(history[-50:])),
        "seconds": prior + time.time() - t0,
        "threads": threads,
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    if prior_stages:
        info["stages"] = prior_stages
        info["total_seconds"] = sum(st.get("seconds", 0.0) for st in prior_stages) + info["seconds"]
        info["total_steps"] = sum(st.get("steps", 0) for st in prior_stages) + steps
    write_text_atomic(json.dumps(info, indent=2), Path(out) / "training.json")
    return info


def _tokenizer(work_dir: Path, examples: list, vocab_size: int, init_from: str | None):
    """(tokenizer, earlier stages): an earlier stage's vocabulary when continuing from one, the resumed run's
    when `work_dir` holds one, else a new one built on the corpus."""
    from transformers import PreTrainedTokenizerFast

    tok_dir = work_dir / "tokenizer"
    prior_stages: list[dict] = []
    if init_from is not None:  # a later stage keeps the earlier stage's vocabulary
        init = Path(init_from)
        if not (init / "training.json").is_file():
            raise FileNotFoundError(
                f"init_from={init_from!r} holds no training.json: pass the folder an earlier train(out=...) wrote"
            )
        record = json.loads((init / "training.json").read_text())
        prior_stages = record.pop("stages", []) + [record]
        tok = PreTrainedTokenizerFast.from_pretrained(str(init))
        if not (tok_dir / "tokenizer.json").is_file():
            tok.save_pretrained(str(tok_dir))
    elif (tok_dir / "tokenizer.json").is_file():  # the resumed run keeps the exact vocabulary
        tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    else:
        tok = build_tokenizer([e.prompt for e in examples] + [e.response for e in examples], vocab_size)
        tok.save_pretrained(str(tok_dir))
    return tok, prior_stages


def _loop(
    model,
    opt,
    tok,
    rows: list,
    state: dict,
    work_dir: Path,
    t0: float,
    *,
    stage: int,
    log_every: int,
    ckpt_every: float,
) -> None:
    """The optimisation steps from `state["step"]` to the run's `steps`, checkpointing into `work_dir`."""
    from tqdm import tqdm

    run = state["run"]
    steps, lr, seed, batch_size = run["steps"], run["lr"], run["seed"], run["batch_size"]
    start, prior, last_ckpt = state["step"], state["seconds"], time.time()
    history = state["history"]
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train organism", mininterval=10)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        rng = random.Random(f"{seed}:{step}" if not stage else f"{seed}:{stage}:{step}")  # later stages: other batches
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step + 7_919 * stage)
        ids, plen = batch(rng.sample(rows, batch_size), tok.eos_token_id)
        loss = masked_diffusion_loss(model, ids, plen, tok.mask_token_id, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(loss.item())
        if step % log_every == 0 or step == steps - 1:
            recent = sum(history[-log_every:]) / len(history[-log_every:])
            bar.set_postfix(loss=f"{recent:.3f}")
            print(
                json.dumps({"step": step, "loss": round(recent, 4), "seconds": round(prior + time.time() - t0, 1)}),
                flush=True,
            )
        if time.time() - last_ckpt > ckpt_every or step == steps - 1:
            state.update(step=step + 1, seconds=prior + time.time() - t0)
            _save_checkpoint(work_dir, model, opt, state)
            last_ckpt = time.time()
