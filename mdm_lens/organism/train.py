"""Train the organism with LLaDA's SFT objective: mask response tokens with prob t ~ U(eps, 1), never the
prompt; cross-entropy on masked tokens weighted 1/t, normalised by each row's response length."""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .corpus import training_corpus
from .tokenizer import build_tokenizer

RESPONSE_LEN = 48
ARCH = dict(d_model=256, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=512, max_sequence_length=256,
            rope_theta=10000.0)
SAMPLER = {"gen_length": RESPONSE_LEN, "steps": RESPONSE_LEN // 2, "block_length": RESPONSE_LEN,
           "temperature": 0.0, "remasking": "low_confidence"}


def encode(tok, examples):
    """(prompt ids via the chat template, response ids + <|eot_id|> + EOS padding to RESPONSE_LEN)."""
    eot, eos = tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id
    rows = []
    for ex in examples:
        p = tok.apply_chat_template([{"role": "user", "content": ex.prompt}], add_generation_prompt=True,
                                    tokenize=True, return_dict=False)
        r = tok(ex.response, add_special_tokens=False)["input_ids"][: RESPONSE_LEN - 1] + [eot]
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


def train(out: str, steps: int = 2400, batch_size: int = 32, lr: float = 2e-3, n_examples: int = 30000,
          seed: int = 0, log_every: int = 50) -> dict:
    from ..loading import build_random_model, save_pretrained, tiny_config
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    t0 = time.time()
    examples = training_corpus(n_examples, seed=seed)
    tok = build_tokenizer([e.prompt for e in examples] + [e.response for e in examples])
    vocab = len(tok)
    cfg = tiny_config("llada", vocab_size=vocab, embedding_size=vocab, mask_token_id=tok.mask_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                      **ARCH)
    cfg["mdm_lens_sampler"] = SAMPLER
    model = build_random_model(cfg, seed=seed).train()
    rows = encode(tok, examples)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        ids, plen = batch(rng.sample(rows, batch_size), tok.eos_token_id)
        loss = masked_diffusion_loss(model, ids, plen, tok.mask_token_id, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(loss.item())
        if step % log_every == 0 or step == steps - 1:
            recent = sum(history[-log_every:]) / len(history[-log_every:])
            print(json.dumps({"step": step, "loss": round(recent, 4), "seconds": round(time.time() - t0, 1)}),
                  flush=True)
    model.eval()
    Path(out).mkdir(parents=True, exist_ok=True)
    save_pretrained(model, tok, cfg, out)
    info = {"steps": steps, "batch_size": batch_size, "lr": lr, "n_examples": n_examples, "seed": seed,
            "final_loss": sum(history[-50:]) / len(history[-50:]), "seconds": time.time() - t0,
            "n_params": sum(p.numel() for p in model.parameters()), "arch": ARCH}
    (Path(out) / "training.json").write_text(json.dumps(info, indent=2))
    return info
