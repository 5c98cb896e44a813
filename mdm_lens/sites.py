"""Canonical (TransformerLens-style) site names and lookups."""
from __future__ import annotations

import difflib

# short name -> template, like TransformerLens' get_act_name aliases
_LAYER_SITES = {
    "resid_pre": "blocks.{l}.hook_resid_pre",
    "attn_out": "blocks.{l}.attn.hook_out",
    "resid_mid": "blocks.{l}.hook_resid_mid",
    "mlp_pre": "blocks.{l}.mlp.hook_pre",
    "pre": "blocks.{l}.mlp.hook_pre",
    "mlp_pre_linear": "blocks.{l}.mlp.hook_pre_linear",
    "pre_linear": "blocks.{l}.mlp.hook_pre_linear",
    "mlp_post": "blocks.{l}.mlp.hook_post",
    "post": "blocks.{l}.mlp.hook_post",
    "mlp_out": "blocks.{l}.mlp.hook_out",
    "resid_post": "blocks.{l}.hook_resid_post",
}
_GLOBAL_SITES = {
    "embed": "hook_embed",
    "ln_final": "ln_final.hook_normalized",
    "normalized": "ln_final.hook_normalized",
    "logits": "hook_logits",
}
LAYER_SITE_KINDS = ("resid_pre", "attn_out", "resid_mid", "mlp_pre", "mlp_pre_linear", "mlp_post",
                    "mlp_out", "resid_post")


def get_act_name(name: str, layer: int | None = None) -> str:
    """`get_act_name("mlp_out", 3) -> "blocks.3.mlp.hook_out"`; full names pass through."""
    if name in _GLOBAL_SITES:
        return _GLOBAL_SITES[name]
    if name in _LAYER_SITES:
        if layer is None:
            raise ValueError(f"site kind {name!r} needs a layer index, e.g. get_act_name({name!r}, 0)")
        return _LAYER_SITES[name].format(l=layer)
    if name.startswith(("blocks.", "hook_", "ln_final.")):
        return name
    raise ValueError(f"unknown site kind {name!r}; known: {sorted({**_LAYER_SITES, **_GLOBAL_SITES})}")


def closest_names(name: str, names: list[str], n: int = 3) -> list[str]:
    """Nearest valid site names, for error messages."""
    return difflib.get_close_matches(name, names, n=n, cutoff=0.0)


def unknown_site_error(name: str, names: list[str]) -> KeyError:
    near = ", ".join(repr(x) for x in closest_names(name, names))
    return KeyError(f"unknown hook site {name!r}; closest real sites: {near} (see model.hook_names)")
