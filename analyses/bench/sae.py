"""`mdm-lens bench sae`: the cost of an SAE spliced in at every denoising step, and SAE training throughput.

Splice overhead: a Top-K SAE with d_sae = 16 · d_model (k = 32) spliced at the middle layer's residual stream on
every step of LLaDA's reference sampler, with the error term (the model's output unchanged) and without it,
against unsteered generation of the same prompt (interleaved medians). Goal: ≤ 1.15× on CPU for the mid-size
bench model. Training throughput: activations per second through `Trainer.train_step` (encode, decode, aux-k,
Adam, decoder renormalisation) at the model's width, on random activations, so it measures the SAE, not the
model; and the store's read rate (activations per second streamed from t-masked canvases).
"""

from __future__ import annotations

import time

import torch

from interventions.plan import Plan
from interventions.sae import SAE
from mdm_lens.sampling import llada_generate

from .sampler import bench_models, interleaved_medians

GOALS = {"splice_ratio_error_term": 1.15}


def splice_bench(
    model, *, gen_length: int, steps: int, prompt_len: int, batch: int, repeats: int, k: int = 32, expansion: int = 16
) -> dict:
    g = torch.Generator().manual_seed(0)
    vocab = model.config.get("vocab_size", 256)
    prompt = torch.randint(0, min(vocab, model.mask_id), (batch, prompt_len), generator=g).to(model.input_device)
    kw = {"steps": steps, "gen_length": gen_length, "block_length": gen_length, "mask_id": model.mask_id}
    site = f"blocks.{model.n_layers // 2}.hook_resid_post"
    d = model.site(site).width
    sae = SAE.init(d, expansion * d, "topk", k=k, seed=0, dtype=model.dtype).to(model.input_device)
    with_err, without = Plan({site: sae.splice(error_term=True)}), Plan({site: sae.splice(error_term=False)})

    def run(plan):
        def go():
            with torch.no_grad():
                if plan is None:
                    return llada_generate(model, prompt, **kw)
                with model.steer(plan):
                    return llada_generate(model, prompt, **kw)

        return go

    med = interleaved_medians(
        {"unsteered": run(None), "splice_error_term": run(with_err), "splice_no_error_term": run(without)}, repeats
    )
    return {
        "seconds": med,
        "splice_ratio_error_term": med["splice_error_term"] / med["unsteered"],
        "splice_ratio_no_error_term": med["splice_no_error_term"] / med["unsteered"],
        "site": site,
        "d_model": d,
        "d_sae": sae.d_sae,
        "k": k,
        "settings": {**kw, "prompt_len": prompt_len, "batch": batch, "repeats": repeats},
    }


def training_throughput(
    d: int, *, expansion: int = 16, k: int = 32, batch: int = 4096, steps: int = 10, device: str = "cpu"
) -> dict:
    """Activations/s of SAE training steps at width `d` (first step excluded as warm-up)."""
    from analyses.sae.train import TrainConfig, Trainer

    class _Random:  # a store stand-in that only serves random batches
        def __init__(self):
            self.d, self.buffer_size, self.g = d, 2 * batch, torch.Generator().manual_seed(0)

        def sample(self, n):
            return torch.randn(n, d, generator=self.g)

    tr = Trainer(_Random(), TrainConfig(d_sae=expansion * d, k=k, steps=steps + 1))  # type: ignore[arg-type]
    tr.sae.to(device)
    tr.since_fired = tr.since_fired.to(device)
    tr.opt = torch.optim.Adam(tr.sae.parameters(), lr=1e-3)
    xs = [torch.randn(batch, d, generator=torch.Generator().manual_seed(i)).to(device) for i in range(2)]
    tr.train_step(xs[0])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        tr.train_step(xs[i % 2])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    s = time.perf_counter() - t0
    return {
        "activations_per_second": steps * batch / s,
        "d_in": d,
        "d_sae": expansion * d,
        "k": k,
        "batch": batch,
        "steps": steps,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def run_sae_bench(
    *,
    model: str | None = None,
    gen_length: int = 32,
    steps: int = 32,
    prompt_len: int = 16,
    batch: int = 1,
    repeats: int = 5,
    device: str | None = None,
) -> dict:
    name, hooked = bench_models(model)[-1]  # the mid-size bench model unless one is named
    hooked.eval()
    out = {
        "benchmark": "sae",
        "model": name,
        "goals": GOALS,
        "splice": splice_bench(
            hooked, gen_length=gen_length, steps=steps, prompt_len=prompt_len, batch=batch, repeats=repeats
        ),
    }
    d = out["splice"]["d_model"]
    dev = device or "cpu"
    big = dev.startswith("cuda")  # a CPU measures a few small steps, a GPU many large ones
    out["training"] = training_throughput(d, device=dev, batch=4096 if big else 1024, steps=20 if big else 3)
    return out


__all__ = ["run_sae_bench", "splice_bench", "training_throughput"]
