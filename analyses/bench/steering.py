"""`mdm-lens bench steer` (hooked vs folded Linear-ACT overhead) and `mdm-lens bench fit` (Bures at d=4096)."""

from __future__ import annotations

import copy
import time

import torch

from .sampler import interleaved_medians, per_model
from mdm_lens.sampling import llada_generate

from interventions.bures import dense_bures, shrinkage_intensity
from interventions.estimators import BuresOT, LinearACT
from interventions.fold import fold
from interventions.plan import Plan


def linear_act_everywhere(model, seed: int = 0) -> Plan:
    """Linear-ACT on mlp_pre + mlp_out of every layer, fitted on random activations."""
    g = torch.Generator().manual_seed(seed)
    maps = {}
    for s in model.site_names(["mlp_pre", "mlp_out"]):
        d = model.site(s).width
        A = torch.randn(32, d, generator=g, dtype=torch.float64)
        maps[s] = LinearACT.fit(A, A * 1.1 + 0.05)
    return Plan(maps)


def steer_bench(model, *, gen_length: int, steps: int, prompt_len: int, batch: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    vocab = model.config.get("vocab_size", 256)
    prompt = torch.randint(0, min(vocab, model.mask_id), (batch, prompt_len), generator=g).to(model.input_device)
    kw = dict(steps=steps, gen_length=gen_length, block_length=gen_length, mask_id=model.mask_id)
    plan = linear_act_everywhere(model)

    def unsteered():
        with torch.no_grad():
            return llada_generate(model, prompt, **kw)

    def hooked():
        with model.steer(plan), torch.no_grad():
            return llada_generate(model, prompt, **kw)

    folded_model = copy.deepcopy(model)  # folded once, outside the timed region
    fold(folded_model, plan)

    def folded():
        with torch.no_grad():
            return llada_generate(folded_model, prompt, **kw)

    med = interleaved_medians({"unsteered": unsteered, "hooked": hooked, "folded": folded}, repeats)
    return {
        "seconds": med,
        "hooked_ratio": med["hooked"] / med["unsteered"],
        "folded_ratio": med["folded"] / med["unsteered"],
        "n_steered_sites": len(plan.sites),
        "settings": {**kw, "prompt_len": prompt_len, "batch": batch, "repeats": repeats},
    }


def fit_bench(d: int = 4096, n: int = 128, d_ref: int = 512, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g)
    B = torch.randn(n, d, generator=g) * 1.3 + 0.2
    t0 = time.perf_counter()
    BuresOT.fit(A, B, shrinkage="ledoit_wolf")
    fit_s = time.perf_counter() - t0
    A, B = A[:, :d_ref].double(), B[:, :d_ref].double()
    m = BuresOT.fit(A, B, shrinkage="ledoit_wolf")
    Ac, Bc, eye = A - A.mean(0), B - B.mean(0), torch.eye(d_ref, dtype=torch.float64)
    Sa, Sb = Ac.T @ Ac / n, Bc.T @ Bc / n
    ra, rb = shrinkage_intensity(Ac, "ledoit_wolf"), shrinkage_intensity(Bc, "ledoit_wolf")
    Sa = (1 - ra) * Sa + ra * Sa.trace() / d_ref * eye
    Sb = (1 - rb) * Sb + rb * Sb.trace() / d_ref * eye
    t0 = time.perf_counter()
    D = dense_bures(Sa, Sb)
    dense_s = time.perf_counter() - t0
    return {
        "bures_fit_seconds_d%d_n%d" % (d, n): fit_s,
        "goal_seconds": 5.0,
        "max_abs_diff_vs_dense_d%d" % d_ref: float((m.dense() - D).abs().max()),
        "dense_solve_seconds_d%d" % d_ref: dense_s,
        "threads": torch.get_num_threads(),
    }


def run_bench(
    what: str,
    *,
    model: str | None = None,
    gen_length: int = 32,
    steps: int = 32,
    prompt_len: int = 16,
    batch: int = 1,
    repeats: int = 5,
) -> dict:
    """`mdm-lens bench steer` (per model) or `mdm-lens bench fit` (no model)."""
    if what == "fit":
        return {"benchmark": "fit", **fit_bench()}
    if what != "steer":
        raise ValueError(f"unknown benchmark {what!r} here; use 'steer' or 'fit' ('sampler' is analyses.bench.sampler)")
    return per_model(
        "steer",
        steer_bench,
        model,
        {"hooked_ratio": 1.10, "folded_ratio": 1.01},
        gen_length=gen_length,
        steps=steps,
        prompt_len=prompt_len,
        batch=batch,
        repeats=repeats,
    )
