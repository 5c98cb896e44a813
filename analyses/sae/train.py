"""Train an SAE on an `ActivationStore`: Adam, dead-latent handling, unit-norm decoder, atomic checkpoints.

Losses (float32, means over the batch): reconstruction MSE; "standard" adds the decoder-norm-weighted L1 of
Anthropic's 2024 update (λ Σ_i f_i ‖W_dec,i‖); "topk" / "batchtopk" add Gao et al.'s aux-k loss, in which the
`d_in / 2` most active *dead* latents (no activation for `dead_after` batches) reconstruct the residual error,
scaled by min(1, n_dead / k_aux) as SAELens does. Decoder rows are kept at unit norm for topk / batchtopk (the
gradient's component along each row is removed before the step, rows renormalised after it). BatchTopK keeps
SAELens's running threshold (an EMA of the smallest kept activation), which is its inference JumpReLU threshold.
JumpReLU is read and written but not trained here (train it with SAELens and load the folder).

A checkpoint (`out/checkpoint.safetensors`) holds the SAE, the optimiser, the store's buffer, rng and cursor,
and the dead-latent counters, written atomically; `train_sae(..., out=)` resumes from it and the result is
bit for bit the uninterrupted run's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interventions.sae import SAE
from mdm_lens.safefile import open_safetensors, save_safetensors_atomic

from .store import ActivationStore

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainConfig:
    architecture: str = "topk"
    d_sae: int = 4096
    k: float | None = 32
    steps: int = 2000
    lr: float = 1e-3
    l1_coefficient: float = 1.0  # standard only
    aux_coefficient: float = 1 / 32  # topk / batchtopk (Gao et al.)
    dead_after: int = 50  # batches without a firing: the latent counts as dead
    threshold_lr: float = 0.01  # batchtopk's running threshold (SAELens's topk_threshold_lr)
    unit_norm_decoder: bool | None = None  # None: True for topk / batchtopk
    log_every: int = 50
    checkpoint_every: int = 250
    seed: int = 0

    def check(self) -> None:
        if self.architecture not in ("standard", "topk", "batchtopk"):
            raise ValueError(
                f"train_sae trains 'standard', 'topk' or 'batchtopk' SAEs, not {self.architecture!r}; "
                "train a JumpReLU SAE with SAELens and load its folder with SAE.load"
            )
        for name in ("steps", "d_sae", "log_every", "checkpoint_every", "dead_after"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    @property
    def unit_norm(self) -> bool:
        return self.architecture != "standard" if self.unit_norm_decoder is None else self.unit_norm_decoder


def explained_variance(x: torch.Tensor, recon: torch.Tensor) -> float:
    """1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over the batch (SAELens's definition, pooled over dimensions)."""
    return float(1 - (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))


def _aux_loss(sae: SAE, x, recon, pre, dead: torch.Tensor) -> torch.Tensor:
    n_dead = int(dead.sum())
    if n_dead == 0:
        return recon.new_zeros(())
    k_aux = sae.d_in // 2
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    masked = torch.where(dead[None], pre, torch.full_like(pre, -torch.inf))
    top = masked.topk(k_aux, dim=-1, sorted=False)
    acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    residual = (x - recon).detach()
    return scale * (acts @ sae.W_dec - residual).pow(2).sum(-1).mean() / sae.d_in


class Trainer:
    """The state of one training run (also what a checkpoint holds)."""

    def __init__(self, store: ActivationStore, cfg: TrainConfig, metadata: dict[str, Any] | None = None):
        cfg.check()
        self.store, self.cfg = store, cfg
        k = cfg.k if cfg.architecture != "standard" else None
        init = store.sample(min(4096, store.buffer_size // 2))
        self.sae = SAE.init(store.d, cfg.d_sae, cfg.architecture, k, seed=cfg.seed, sample=init, metadata=metadata)
        if cfg.architecture == "standard":  # small encoder (Anthropic's update): avoid a dense start
            with torch.no_grad():
                self.sae.W_enc.mul_(0.1)
        self.opt = torch.optim.Adam([p for p in self.sae.parameters() if p.requires_grad], lr=cfg.lr)
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
        self.step = 0
        self.log: list[dict] = []

    def train_step(self, x: torch.Tensor) -> dict:
        sae, cfg = self.sae, self.cfg
        f, pre = sae.train_encode(x)
        recon = sae.decode(f)
        mse = (recon - x).pow(2).sum(-1).mean() / sae.d_in
        loss = mse
        if cfg.architecture == "standard":
            loss = loss + cfg.l1_coefficient * (f * sae.W_dec.norm(dim=-1)).sum(-1).mean() / sae.d_in
        else:
            dead = self.since_fired >= cfg.dead_after
            loss = loss + cfg.aux_coefficient * _aux_loss(sae, x, recon, pre, dead)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.unit_norm and sae.W_dec.grad is not None:  # keep the step tangent to the unit sphere
            with torch.no_grad():
                W, G = sae.W_dec, sae.W_dec.grad
                G -= (G * W).sum(-1, keepdim=True) * W
        self.opt.step()
        with torch.no_grad():
            if cfg.unit_norm:
                sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            fired = (f != 0).any(0)
            self.since_fired = torch.where(fired, torch.zeros_like(self.since_fired), self.since_fired + 1)
            if cfg.architecture == "batchtopk" and bool((f > 0).any()):
                low = f[f > 0].min()
                sae.threshold.fill_(float((1 - cfg.threshold_lr) * sae.threshold[0] + cfg.threshold_lr * low))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"SAE training diverged at step {self.step} (loss {float(loss)}); lower lr (now {cfg.lr})"
            )
        self.step += 1
        return {
            "step": self.step,
            "loss": float(loss.detach()),
            "mse": float(mse.detach()),
            "explained_variance": explained_variance(x, recon.detach()),
            "l0": float((f != 0).sum(-1).float().mean()),
            "dead_fraction": float((self.since_fired >= cfg.dead_after).float().mean()),
        }

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, folder: Path) -> None:
        t: dict[str, torch.Tensor] = {f"sae::{k}": v.detach() for k, v in self.sae.state_dict().items()}
        for i, st in self.opt.state_dict()["state"].items():
            for k, v in st.items():
                t[f"opt::{i}::{k}"] = torch.as_tensor(v)
        t.update({f"store::{k}": v for k, v in self.store.state_dict().items()})
        t["since_fired"] = self.since_fired
        meta = {
            "config": json.dumps(asdict(self.cfg)),
            "step": str(self.step),
            "log": json.dumps(self.log),
            "metadata": json.dumps(self.sae.metadata, default=str),
        }
        save_safetensors_atomic({k: v.contiguous().clone() for k, v in t.items()}, folder / CHECKPOINT, meta)

    def load_checkpoint(self, folder: Path) -> None:
        path = folder / CHECKPOINT
        with open_safetensors(path, "an SAE training checkpoint") as f:
            meta = f.metadata() or {}
            saved = json.loads(meta.get("config", "{}"))
            if saved != asdict(self.cfg):
                diff = {k: (saved.get(k), v) for k, v in asdict(self.cfg).items() if saved.get(k) != v}
                raise ValueError(
                    f"{path} was written by a run with other settings {diff} (checkpoint, now); "
                    "resume with the same TrainConfig or use another output folder"
                )
            t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
        self.sae.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("sae::")})
        state = self.opt.state_dict()
        for i in state["param_groups"][0]["params"]:
            state["state"][i] = {k.split("::")[2]: v for k, v in t.items() if k.startswith(f"opt::{i}::")}
        self.opt.load_state_dict(state)
        self.store.load_state_dict({k[7:]: v for k, v in t.items() if k.startswith("store::")})
        self.since_fired = t["since_fired"].clone()
        self.step, self.log = int(meta["step"]), json.loads(meta["log"])


def train_sae(
    store: ActivationStore,
    cfg: TrainConfig | None = None,
    *,
    out=None,
    resume: bool = True,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> tuple[SAE, list[dict]]:
    """Train for `cfg.steps` batches; returns (sae, log records). With `out`, checkpoints every
    `checkpoint_every` steps and resumes from `out/checkpoint.safetensors` when `resume`; the final SAE is saved
    in SAELens's layout to `out/sae/`. The store's description (site, variant, mask ratios / steps) and the
    model's family and id go into the SAE's metadata. `stop_after`: pause after that many steps (a time-boxed
    slice of the run; call again with the same `out` to go on)."""
    cfg = cfg or TrainConfig()
    model = store.model
    meta = {
        "model_name": str(model.name_or_path),
        "hook_name": store.site,
        "mdm_lens": {"family": model.spec.name, "site_width": store.d, **store.describe(), "train_config": asdict(cfg)},
    }
    meta.update(metadata or {})
    torch.manual_seed(cfg.seed)
    trainer = Trainer(store, cfg, meta)
    folder = None if out is None else Path(out)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if resume and (folder / CHECKPOINT).exists():
            trainer.load_checkpoint(folder)
    bar = tqdm(
        total=cfg.steps, initial=trainer.step, desc=f"SAE {cfg.architecture} @ {store.site}", disable=not progress
    )
    last = cfg.steps if stop_after is None else min(cfg.steps, int(stop_after))
    while trainer.step < last:
        rec = trainer.train_step(store.next_batch())
        bar.update(1)
        if trainer.step % cfg.log_every == 0 or trainer.step == cfg.steps:
            trainer.log.append(rec)
            bar.set_postfix(
                ev=f"{rec['explained_variance']:.3f}", l0=f"{rec['l0']:.1f}", dead=f"{rec['dead_fraction']:.2f}"
            )
        if folder is not None and (trainer.step % cfg.checkpoint_every == 0 or trainer.step == last):
            trainer.save_checkpoint(folder)
    bar.close()
    trainer.sae.metadata["mdm_lens"]["activations_read"] = store.n_read
    if folder is not None and trainer.step == cfg.steps:
        trainer.sae.save(folder / "sae")
    return trainer.sae, trainer.log


__all__ = ["TrainConfig", "Trainer", "explained_variance", "train_sae"]
