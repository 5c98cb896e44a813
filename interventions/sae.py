"""Sparse autoencoders as intervention objects, with SAELens 6's inference semantics.

Architectures (SAELens's `architecture` names): "standard" (ReLU; trained with the decoder-norm-weighted L1 of
Anthropic's 2024 update), "topk" (Gao et al. 2024), "batchtopk" (Bussmann et al. 2024) and "jumprelu"
(Rajamanoharan et al. 2024). Encoding follows SAELens exactly, so files move both ways (`interventions.sae_io`):
`sae_in = x - b_dec` (when `apply_b_dec_to_input`), `pre = sae_in @ W_enc + b_enc`, then the activation;
`decode(f) = f @ W_dec + b_dec`. A BatchTopK SAE chooses its latents per *batch* while it trains; at inference it is
a JumpReLU with one threshold for every latent (the running minimum positive activation), which is what SAELens
writes for it too, so `encode` of a batchtopk SAE is per-token and `train_encode` is the batch rule.

Using an SAE on a model: `sae.splice()` replaces the site's activation by the reconstruction (error term kept by
default: the model's output is then unchanged until features are edited), `sae.ablate(...)` / `sae.clamp(...)`
edit features inside the splice, and `sae.steer(feature, coeff)` adds a decoder row as a plain `AffineMap`
(foldable; restrict it to steps / scopes with `interventions.restrict` or `Plan.window` / `Plan.scope`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from .affine import AffineMap
from .sae_io import ARCHITECTURES, read_sae_folder, save_sae


class SAE(nn.Module):
    """`W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]` (rows are feature directions), `b_dec [d_in]`,
    `threshold [d_sae]` (jumprelu; batchtopk's inference threshold). `metadata`: what it was trained on (SAELens's
    `model_name` / `hook_name` plus mdm-lens's family, site width, variant, steps and mask ratios)."""

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        architecture: str = "topk",
        k: float | None = None,
        *,
        apply_b_dec_to_input: bool = True,
        rescale_acts_by_decoder_norm: bool = False,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown SAE architecture {architecture!r}; use one of {ARCHITECTURES}")
        if int(d_in) <= 0 or int(d_sae) <= 0:
            raise ValueError(f"d_in and d_sae must be positive, got d_in={d_in}, d_sae={d_sae}")
        if architecture in ("topk", "batchtopk"):
            if k is None or not 0 < k <= d_sae or (architecture == "topk" and int(k) != k):
                raise ValueError(
                    f"{architecture} needs k in (0, d_sae={d_sae}]{' (an integer)' if architecture == 'topk' else ''}, "
                    f"got k={k}"
                )
        elif k is not None:
            raise ValueError(f"k={k} is for topk / batchtopk SAEs, not {architecture!r}; leave it out")
        if rescale_acts_by_decoder_norm and architecture not in ("topk", "batchtopk"):
            raise ValueError("rescale_acts_by_decoder_norm is a topk / batchtopk option (SAELens)")
        self.d_in, self.d_sae, self.architecture = int(d_in), int(d_sae), architecture
        self.k = None if k is None else (int(k) if architecture == "topk" else float(k))
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.metadata: dict[str, Any] = dict(metadata or {})
        kw = {"dtype": dtype, "device": device}
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae, **kw))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, **kw))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in, **kw))
        self.b_dec = nn.Parameter(torch.zeros(d_in, **kw))
        if architecture in ("jumprelu", "batchtopk"):
            self.threshold = nn.Parameter(torch.zeros(d_sae, **kw), requires_grad=architecture == "jumprelu")

    def __repr__(self) -> str:
        k = f", k={self.k}" if self.k is not None else ""
        return f"SAE({self.architecture}, d_in={self.d_in}, d_sae={self.d_sae}{k}, dtype={self.W_enc.dtype})"

    @property
    def d(self) -> int:
        """Width of the site it reads (the Intervention protocol's `d`)."""
        return self.d_in

    @property
    def directions(self) -> Float[torch.Tensor, "d_sae d_in"]:
        """Feature directions: the decoder rows."""
        return self.W_dec

    @classmethod
    def init(
        cls,
        d_in: int,
        d_sae: int,
        architecture: str = "topk",
        k: float | None = None,
        *,
        seed: int = 0,
        sample: Float[torch.Tensor, "n d_in"] | None = None,
        **kw,
    ) -> SAE:
        """Seeded initialisation: unit-norm decoder rows, encoder = decoder transpose (Gao et al.), `b_dec` at the
        geometric-median proxy (mean) of `sample` when given."""
        sae = cls(d_in, d_sae, architecture, k, **kw)
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(d_sae, d_in, generator=g, dtype=torch.float64)
        W = W / W.norm(dim=1, keepdim=True)
        with torch.no_grad():
            sae.W_dec.copy_(W)
            sae.W_enc.copy_(W.T)
            if sample is not None:
                sae.b_dec.copy_(torch.as_tensor(sample, dtype=torch.float64).mean(0))
        return sae

    # ------------------------------------------------------------------ encode / decode
    def pre_acts(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... d_sae"]:
        if x.shape[-1] != self.d_in:
            raise ValueError(
                f"SAE of d_in={self.d_in} applied to activations of width {x.shape[-1]}; load the SAE "
                "trained for this site"
            )
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        pre = x @ self.W_enc + self.b_enc
        if self.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        return pre

    def activate(self, pre: Float[torch.Tensor, "... d_sae"]) -> Float[torch.Tensor, "... d_sae"]:
        """The per-token activation (inference form)."""
        if self.architecture == "standard":
            return pre.relu()
        if self.architecture == "topk":
            vals, idx = pre.topk(self.k, dim=-1, sorted=False)
            return torch.zeros_like(pre).scatter(-1, idx, vals.relu())
        return pre.relu() * (pre > self.threshold)  # jumprelu, and batchtopk at inference

    def encode(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... d_sae"]:
        return self.activate(self.pre_acts(x))

    def train_encode(self, x: Float[torch.Tensor, "n d_in"]) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature acts, pre-activations) as training sees them: BatchTopK keeps the `k · n` largest ReLU'd
        pre-activations of the whole batch (Bussmann et al.); other architectures as `encode`."""
        pre = self.pre_acts(x)
        if self.architecture != "batchtopk":
            return self.activate(pre), pre
        acts = pre.relu()
        flat = acts.flatten()
        keep = min(int(self.k * acts.shape[:-1].numel()), flat.numel())
        top = flat.topk(keep, sorted=False)
        return torch.zeros_like(flat).scatter(-1, top.indices, top.values).reshape(acts.shape), pre

    def decode(self, f: Float[torch.Tensor, "... d_sae"]) -> Float[torch.Tensor, "... d_in"]:
        if self.rescale_acts_by_decoder_norm:
            f = f / self.W_dec.norm(dim=-1)
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... d_in"]:
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ checks
    def check_finite(self) -> None:
        """NaN / inf weights would splice garbage into every step without a word: refuse them."""
        for name, p in self.named_parameters():
            bad = int((~torch.isfinite(p)).sum())
            if bad:
                raise ValueError(
                    f"{self!r}: {name} has {bad} NaN/inf values; the SAE file is damaged or training "
                    "diverged (lower the learning rate and retrain)"
                )

    def check(self, model, site: str | None = None) -> None:
        """Refuse a model of another family or another width at the site (naming both); a missing site name
        falls back to the one recorded in metadata."""
        from .plan import _describe

        site = site or self.metadata.get("hook_name")
        meta = self.metadata.get("mdm_lens") or {}
        fam, name = meta.get("family"), self.metadata.get("model_name")
        here = _describe(model.spec.name, model.name_or_path)
        if fam is not None and fam != model.spec.name:
            raise ValueError(
                f"SAE refused: it was trained on {_describe(fam, name)}, and this is {here}; an SAE "
                "reads one family's activations. Train or load an SAE for this model"
            )
        if site is None:
            raise ValueError("no site given and none recorded in the SAE's metadata (hook_name); pass site=")
        width = model.site(site).width
        if width != self.d_in:
            raise ValueError(
                f"SAE refused: it reads width {self.d_in} (trained on {_describe(fam, name)}), and site "
                f"{site!r} of this {here} carries width {width}. Use an SAE trained for this model"
            )

    # ------------------------------------------------------------------ interventions
    def splice(self, error_term: bool = True) -> SAESplice:
        """The site's activation replaced by the SAE's reconstruction; with `error_term` the reconstruction error
        is added back, so the output is unchanged until features are edited (`ablate`, `clamp`)."""
        return SAESplice(self, error_term)

    def ablate(self, features: Sequence[int] | int, error_term: bool = True) -> SAESplice:
        """Zero the given features inside the splice."""
        return SAESplice(self, error_term).clamped(features, 0.0)

    def clamp(
        self, features: Sequence[int] | int, value: float | Sequence[float], error_term: bool = True
    ) -> SAESplice:
        """Hold the given features at `value` (where the splice acts) inside the splice."""
        return SAESplice(self, error_term).clamped(features, value)

    def steer(self, feature: int, coeff: float, *, unit: bool = True) -> AffineMap:
        """Add `coeff` × the feature's decoder row (unit-normed when `unit`): an affine map, so it composes with
        plans, restricts to steps / scopes, and folds into weights when unrestricted."""
        self._check_feature(feature)
        v = self.W_dec[feature].detach().double().cpu()
        if unit:
            v = v / v.norm().clamp_min(1e-12)
        return AffineMap(self.d_in, "identity", beta=coeff * v, meta={"sae_feature": int(feature), "coeff": coeff})

    def _check_feature(self, feature: int) -> None:
        if not isinstance(feature, int) or not 0 <= feature < self.d_sae:
            raise ValueError(f"feature {feature!r} is not a latent of this SAE; use an integer in [0, {self.d_sae})")

    def save(self, path, metadata: dict[str, Any] | None = None) -> None:
        """A folder in SAELens's layout: cfg.json + sae_weights.safetensors (`interventions.sae_io`)."""
        save_sae(self, path, metadata)

    @classmethod
    def load(cls, path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> SAE:
        """An SAE folder in SAELens's layout (written by SAELens or by `save`); NaN / inf weights are refused."""
        cfg, tensors = read_sae_folder(path)
        arch = cfg["architecture"]
        topk = arch == "topk"
        sae = cls(
            cfg["d_in"],
            cfg["d_sae"],
            arch,
            cfg.get("k") if topk else None,
            apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
            rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)) and topk,
            dtype=dtype or cfg["torch_dtype"],
            device=device,
            metadata=cfg.get("metadata") or {},
        )
        with torch.no_grad():
            for k, v in tensors.items():
                getattr(sae, k).copy_(v)
        try:
            sae.check_finite()
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        return sae


@dataclass
class SAESplice:
    """`fn(act, ctx)`: the activation through the SAE, with features edited (`clamp_idx` held at `clamp_val`).

    With the error term, the result is `act + decode(edited) - decode(clean)`: bit-for-bit `act` when nothing is
    edited. `lam` interpolates between the activation (0) and the splice (1)."""

    sae: SAE
    error_term: bool = True
    clamp_idx: torch.Tensor | None = None
    clamp_val: torch.Tensor | None = None
    lam: float = 1.0
    _cast: dict = field(default_factory=dict, repr=False)

    @property
    def d(self) -> int:
        return self.sae.d_in

    def clamped(self, features: Sequence[int] | int, value: float | Sequence[float]) -> SAESplice:
        feats = [features] if isinstance(features, int) else list(features)
        for f in feats:
            self.sae._check_feature(f)
        vals = torch.as_tensor(value, dtype=torch.float64).expand(len(feats)).clone()
        if not torch.isfinite(vals).all():
            raise ValueError(f"clamp values must be finite, got {value!r}")
        idx = torch.tensor(feats, dtype=torch.long)
        if self.clamp_idx is not None:
            idx, vals = torch.cat([self.clamp_idx, idx]), torch.cat([self.clamp_val, vals])
        return SAESplice(self.sae, self.error_term, idx, vals, self.lam)

    def strength(self, lam: float) -> SAESplice:
        return SAESplice(self.sae, self.error_term, self.clamp_idx, self.clamp_val, self.lam * lam)

    def _clamp_on(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._cast:
            self._cast[key] = (self.clamp_idx.to(device), self.clamp_val.to(device, dtype))
        return self._cast[key]

    def __call__(self, act: Float[torch.Tensor, "... d"], ctx=None) -> Float[torch.Tensor, "... d"]:
        sae = self.sae
        with torch.no_grad():
            f = sae.encode(act)
            if self.error_term:
                # act + decode(edited) - decode(f): only the edited latents differ, so the difference is their
                # change times their decoder rows (exactly 0 with no edits: the output is `act` bit for bit)
                delta = torch.zeros_like(act)
                if self.clamp_idx is not None:
                    idx, val = self._clamp_on(f.device, f.dtype)
                    W = sae.W_dec[idx]
                    if sae.rescale_acts_by_decoder_norm:
                        W = W / W.norm(dim=-1, keepdim=True)
                    delta = ((val - f[..., idx]) @ W).to(act.dtype)
                out = act + delta
            else:
                if self.clamp_idx is not None:
                    idx, val = self._clamp_on(f.device, f.dtype)
                    f[..., idx] = val
                out = sae.decode(f).to(act.dtype)
            return out if self.lam == 1.0 else act + self.lam * (out - act)


__all__ = ["ARCHITECTURES", "SAE", "SAESplice"]
