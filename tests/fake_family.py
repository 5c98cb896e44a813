"""A model family declared in one file, as a new family would be: its spec (ids, sampler and settings, length
key, loading facts, sites, tiny config) and its own sampler. The network is LLaDA's (a new family would bring
its own module), the config a `fake_mdm` model type, the sampler a plain one: every step unmask the most
confident quarter of the masked positions, greedily. Nothing outside this file knows the family."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from mdm_lens.families import llada
from mdm_lens.sampling.common import StepInfo, announcing, logits_of

MASK_ID = 0  # a mask id of 0: the wrapper must not take it for a missing one


def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    settings: dict[str, Any],
    *,
    on_step,
    trace,
    special,
    return_history: bool = False,
) -> torch.Tensor:
    n, steps = settings["answer_tokens"], settings["steps"]
    b, plen = input_ids.shape
    x = torch.cat([input_ids, torch.full((b, n), model.mask_id, dtype=torch.long, device=input_ids.device)], 1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(b, n)], 1)
    trace.start(x)
    with announcing(model, on_step) as announce:
        for step in range(steps):
            announce(StepInfo(step, steps, 0, 1, plen, n, "fake"))
            logits = logits_of(model(x, attention_mask=attention_mask))
            masked = x == model.mask_id
            conf, tok = logits.softmax(-1).max(-1)
            conf = torch.where(masked, conf, -torch.inf)
            k = -(-int(masked[0].sum()) // (steps - step))  # what is left, spread over the steps left
            idx = conf.topk(k, dim=-1).indices
            x.scatter_(1, idx, tok.gather(1, idx))
            trace.record(step, x)
    return x


def tiny_config(**overrides: Any) -> dict[str, Any]:
    cfg = llada.tiny_config()
    return {**cfg, "model_type": "fake_mdm", "architectures": ["FakeMDM"], "mask_token_id": MASK_ID, **overrides}


SPEC = replace(
    llada.SPEC,
    name="fake_mdm",
    model_types=("fake_mdm",),
    architectures=("FakeMDM",),
    default_mask_id=MASK_ID,
    sampler="fake",
    recommended={"answer_tokens": 6, "steps": 3},
    length_key="answer_tokens",
    position_key=None,
    generate=generate,
    fast=None,
    tiny_config=tiny_config,
    tokenizer_style=None,
    hub_keys=None,
)
