"""Folding affine maps on mixture-of-experts sites: what is exact, and the reason for the rest.

An MoE layer's output (`blocks.{l}.hook_mlp_out`) is no single linear's output:

    out = sum_k w_k * down_k(...)  +  down_shared(...)

with routing weights w_k that change per token and do not sum to 1 (LLaDA2: `routed_scaling_factor`; LLaDA-MoE:
un-normalised top-k probabilities). A map T(x) = omega x + beta on `out` is still exact in the weights:

    T(out) = sum_k w_k * (omega down_k)(...)  +  (omega down_shared + beta)(...)

so omega goes into every routed expert's down projection (no bias: a bias there would be scaled by w_k) and
(omega, beta) into the shared experts' down projection, which always runs at weight 1. Without shared experts
only a map with beta = 0 folds; one with a translation is refused, naming the site, why, and the fix. A map on
`hook_expert_out` (each chosen expert's output, before weighting) folds, beta included, into every routed
expert's down projection: each slot's value is some expert's down projection output. The gate is refused
elsewhere (it has no single writing linear in the table), and the router's ids and weights are not d-wide.
"""

from __future__ import annotations

from typing import Any

from .affine import AffineMap


def moe_writes(model: Any, site: str, info: Any, m: AffineMap) -> list[tuple[str, AffineMap, str]] | None:
    """(layer path, map, site) triples that fold `m` at an MoE site exactly; None when `site` is not an MoE
    output; raises ValueError (site, reason, fix) when it is one and the map cannot fold exactly."""
    writers = model.spec.moe_writers
    if writers is None or info.layer is None or info.role not in ("mlp_out", "expert_out"):
        return None
    routed, shared = writers(model.model, info.layer)
    if not routed:
        return None
    if info.role == "expert_out":
        return [(p, m, site) for p in routed]
    if not bool((m.beta != 0).any()):
        return [(p, m, site) for p in routed + shared]
    if not shared:
        raise ValueError(
            f"cannot fold {site!r}: this MoE layer's output is sum_k w_k * expert_k(h) with per-token routing "
            "weights w_k that do not sum to 1 and it has no shared expert running at weight 1, so the map's "
            "translation beta has no linear layer to go into (a bias on each expert would be scaled by w_k); "
            "only the linear part omega folds exactly. Apply the map as a hook instead: model.steer(plan)"
        )
    linear_part = m.then(AffineMap(m.d, "identity", beta=-m.beta))  # omega x: beta - beta = 0 exactly
    return [(p, linear_part, site) for p in routed] + [(p, m, site) for p in shared]
