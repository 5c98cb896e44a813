"""Folding affine maps into weights: steered generation at unsteered speed, exactly undoable.

A map on a site that *is* a linear layer's output (Site.linear) folds into that layer: W' = ωW, b' = ωb + β
(a bias is added where the layer has none); on `hook_embed` the embedding rows become ωe + β. A
directional ablation folds on the residual stream only when the plan ablates the same direction at every
residual site: then orthogonalising every residual writer (embedding, attention out, MLP down) is the same
computation (Arditi et al.). Anything whose effect depends on position or step is refused, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mdm_lens.protocols import Foldable

from .affine import AffineMap
from .fold_moe import moe_writes
from .plan import Plan

RESIDUAL_ROLES = ("resid_pre", "resid_mid", "resid_post")  # the residual stream's sites, by role


def _composed(site: str, ms: list) -> AffineMap:
    out = None
    for m in ms:
        if not isinstance(m, Foldable):
            raise ValueError(
                f"cannot fold site {site!r}: its {m!r} is not one affine map at every position and "
                "step (a token scope, step window, support bounds or per-timestep schedule makes the "
                "effect depend on position or step); apply it with model.steer(plan) instead"
            )
        out = m if out is None else out.then(m)
    return out


def _is_ablation(m: AffineMap) -> torch.Tensor | None:
    """The unit direction v if m is I − v vᵀ with β = 0, else None."""
    if m.kind != "lowrank" or m.U.shape[1] != 1 or abs(m.scale - 1) > 1e-12 or m.beta.abs().max() > 1e-12:
        return None
    u, v = m.U[:, 0], m.V[:, 0]
    return v if torch.allclose(u, -v, atol=1e-10) and abs(float(v.norm()) - 1) < 1e-8 else None


@dataclass
class FoldHandle:
    """Restores the original weights bit for bit (`restore()`, or leaving the `with` block).

    While it is active the model reports it (`model.folded`, `model.active_fold`); restoring twice is a no-op."""

    model: nn.Module = field(repr=False)
    plan: Plan | None = None
    saved: dict = field(default_factory=dict, repr=False)  # path -> (weight clone, bias clone or None)

    def restore(self) -> None:
        if not self.saved and getattr(self.model, "active_fold", None) is not self:
            return
        with self.model.exclusive("restoring folded weights", "restoring folded weights"), torch.no_grad():
            for path, (w, b) in self.saved.items():
                mod = self.model.model.get_submodule(path)
                mod.weight.data = w
                if b is None:
                    if getattr(mod, "bias", None) is not None:
                        mod.register_parameter("bias", None)
                else:
                    mod.bias.data = b
        self.saved = {}
        if getattr(self.model, "active_fold", None) is self:
            self.model.active_fold = None

    def __enter__(self) -> "FoldHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def _plan_writes(model, plan: Plan) -> list[tuple[str, AffineMap, str]]:
    """Validate everything first; returns (layer path, map, site) triples. Nothing is modified here."""
    plan.check(model)
    if plan.extras:
        raise ValueError("cannot fold reference alignment: it reads a reference sequence at every step")
    writes, ablations = [], {}
    for site, ms in plan.maps.items():
        m = _composed(site, ms)
        info = model.site(site)
        if info.role in RESIDUAL_ROLES:
            v = _is_ablation(m)
            if v is None:
                raise ValueError(
                    f"cannot fold {site!r}: on the residual stream only a directional ablation "
                    "(same direction at every residual site) folds exactly"
                )
            ablations[site] = v
        elif info.linear is not None:
            writes.append((info.linear, m, site))
        elif (moe := moe_writes(model, site, info, m)) is not None:  # MoE output: fold_moe says what is exact
            writes += moe
        else:
            raise ValueError(
                f"cannot fold {site!r}: no single linear layer writes it (e.g. mlp.hook_post is an "
                "activation product); steer it with hooks instead"
            )
    if ablations:
        wanted = set(model.site_names(RESIDUAL_ROLES))
        missing = sorted(wanted - set(ablations))
        vs = list(ablations.values())
        if missing or any(not torch.allclose(vs[0], v, atol=1e-8) for v in vs[1:]):
            raise ValueError(
                "a residual directional ablation folds only when the same direction is ablated at "
                f"every residual site; missing or different at {missing[:4] or 'some sites'}. "
                "Build it with interventions.fold.ablation_everywhere(model, direction)"
            )
        writers = model.spec.residual_writers(model.model) if model.spec.residual_writers else None
        if not writers:
            raise ValueError(f"the {model.spec.name} family declares no residual writers, so ablation cannot fold")
        proj = AffineMap(vs[0].numel(), "lowrank", U=-vs[0][:, None], V=vs[0][:, None])
        writes += [(w, proj, "every residual site") for w in writers]
    return writes


def _folded_weights(mod: nn.Module, m: AffineMap) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The new weight (and bias; None for an embedding) in the layer's dtype, computed in float64."""
    W = mod.weight.data.to(torch.float64)
    if isinstance(mod, nn.Embedding):
        return m(W).to(mod.weight.dtype), None
    b = mod.bias.data.to(torch.float64) if mod.bias is not None else torch.zeros(W.shape[0], dtype=torch.float64)
    dtype = mod.bias.dtype if mod.bias is not None else mod.weight.dtype
    return m.linear(W.T).T.to(mod.weight.dtype), m(b).to(dtype)  # ω applied along the output dim


def _check_finite(path: str, site: str, new: torch.Tensor, what: str) -> None:
    bad = int((~torch.isfinite(new)).sum())
    if bad:
        raise ValueError(
            f"fold refused: folding the map of {site!r} into {path} gives {bad} of {new.numel()} "
            f"non-finite {what} entries in {new.dtype} (the map's omega or beta is too large for the "
            "model's dtype, or the weights already hold NaN/inf); no weight was changed. Steer with "
            "model.steer(plan) or check the map"
        )


def fold(model, plan: Plan) -> FoldHandle:
    """Write the plan into the weights; returns a handle that restores them (also a context manager).

    All or nothing: on any exception (KeyboardInterrupt included) or a non-finite result every weight is put
    back bit for bit before the exception propagates. One fold at a time: a folded model refuses another fold
    (restoring folds out of order could not be exact); fold the sum of the plans instead."""
    with model.exclusive("folding a plan", "folding a plan"):  # not under another thread's generation
        active = model.active_fold
        if active is not None:
            raise ValueError(
                f"fold refused: the model is already folded with {active.plan!r}; restore that first "
                "(handle.restore() or leave its `with` block), then fold once with the sum of the plans "
                "(fold(model, plan_a + plan_b))"
            )
        writes = _plan_writes(model, plan)
        handle = FoldHandle(model, plan)
        try:
            model.active_fold = handle
            with torch.no_grad():
                for path, m, site in writes:
                    mod = model.model.get_submodule(path)
                    if path not in handle.saved:
                        b = getattr(mod, "bias", None)
                        handle.saved[path] = (mod.weight.data.clone(), None if b is None else b.data.clone())
                    W, b = _folded_weights(mod, m)
                    _check_finite(path, site, W, "weight")
                    if b is not None:
                        _check_finite(path, site, b, "bias")
                    mod.weight.data = W
                    if b is None:
                        continue
                    if mod.bias is None:
                        mod.bias = nn.Parameter(b, requires_grad=False)
                    else:
                        mod.bias.data = b
        except BaseException:
            handle.restore()
            raise
    return handle


def ablation_everywhere(model, direction: torch.Tensor) -> Plan:
    """Directional ablation of one direction at every residual site (Arditi et al.; foldable)."""
    v = torch.as_tensor(direction, dtype=torch.float64)
    v = v / v.norm()
    m = AffineMap(v.numel(), "lowrank", U=-v[:, None], V=v[:, None], meta={"estimator": "directional_ablation"})
    return Plan({site: m for site in model.site_names(RESIDUAL_ROLES)})
