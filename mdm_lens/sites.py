"""Canonical (TransformerLens-style) site names: the one role table, and lookups.

A site's *role* says what the tensor is (the residual stream before a block, the MLP's pre-activation,
...); its *name* is the role placed at a layer. Every site name in the package is built here.
"""
from __future__ import annotations

import difflib

# role -> name template: the one table of site roles (the per-layer ones carry `{l}`)
LAYER_ROLES = {
    "resid_pre": "blocks.{l}.hook_resid_pre",
    "attn_out": "blocks.{l}.attn.hook_out",
    "resid_mid": "blocks.{l}.hook_resid_mid",
    "mlp_pre": "blocks.{l}.mlp.hook_pre",
    "mlp_pre_linear": "blocks.{l}.mlp.hook_pre_linear",
    "mlp_post": "blocks.{l}.mlp.hook_post",
    "mlp_out": "blocks.{l}.mlp.hook_out",
    "resid_post": "blocks.{l}.hook_resid_post",
}
GLOBAL_ROLES = {"embed": "hook_embed", "ln_final": "ln_final.hook_normalized", "logits": "hook_logits"}
# TransformerLens' short aliases, accepted by get_act_name only
_ALIASES = {"pre": "mlp_pre", "pre_linear": "mlp_pre_linear", "post": "mlp_post", "normalized": "ln_final"}


def get_act_name(name: str, layer: int | None = None) -> str:
    """`get_act_name("mlp_out", 3) -> "blocks.3.mlp.hook_out"`; full names pass through."""
    role = _ALIASES.get(name, name)
    if role in GLOBAL_ROLES:
        return GLOBAL_ROLES[role]
    if role in LAYER_ROLES:
        if layer is None:
            raise ValueError(f"site role {name!r} needs a layer index, e.g. get_act_name({name!r}, 0)")
        return LAYER_ROLES[role].format(l=int(layer))
    if name.startswith(("blocks.", "hook_", "ln_final.")):
        return name
    raise ValueError(f"unknown site role {name!r}; known: {sorted({*LAYER_ROLES, *GLOBAL_ROLES, *_ALIASES})}")


def check_roles(roles, where: str = "roles") -> list[str]:
    """Per-layer roles, validated: an unknown one raises naming the valid ones."""
    roles = list(roles)
    bad = [r for r in roles if r not in LAYER_ROLES]
    if bad:
        raise ValueError(f"unknown {where} {bad}; use per-layer site roles from {list(LAYER_ROLES)}")
    return roles


def closest_names(name: str, names: list[str], n: int = 3) -> list[str]:
    """Nearest valid site names, for error messages."""
    return difflib.get_close_matches(name, names, n=n, cutoff=0.0)


def unknown_site_error(name: str, names: list[str]) -> KeyError:
    near = ", ".join(repr(x) for x in closest_names(name, names))
    return KeyError(f"unknown hook site {name!r}; closest real sites: {near} (see model.hook_names)")
