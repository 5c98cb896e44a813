"""Canonical (TransformerLens-style) site names: the one role table, aliases and lookups.

A site's *role* says what the tensor is (the residual stream before a block, the MLP's pre-activation,
...); its *name* is the role placed at a layer: `get_act_name(role, layer) == site.name` for every site.
Canonical names are the ones TransformerLens' `get_act_name` builds (`blocks.3.hook_mlp_out`); the
component names of TL 4.3's TransformerBridge that carry the same tensor (`blocks.3.mlp.hook_out`,
`blocks.3.mlp.out.hook_out`, ...) are *aliases*: they resolve to the one canonical site, so a hook on an
alias is one hook on that site. Every site name in the package is built here.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from numbers import Integral


@dataclass(frozen=True)
class Role:
    """One kind of tensor: its canonical name template (`{l}` = layer), its dims (symbols resolved per model
    by `Site.shape`: batch, pos, d_model, d_mlp, n_heads, n_kv_heads, d_head, query, key, one, ...) and the
    TL-bridge names of the same tensor (alias templates)."""

    template: str
    dims: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def per_layer(self) -> bool:
        return "{l}" in self.template


_RES = ("batch", "pos", "d_model")
_MLP = ("batch", "pos", "d_mlp")
_B = "blocks.{l}."

# The per-layer roles steering tools take (residual stream and MLP: CLI `--role` choices, sweeps).
STEER_ROLES = {
    "resid_pre": Role(_B + "hook_resid_pre", _RES, (_B + "hook_in", _B + "ln1.hook_in")),
    "attn_out": Role(_B + "hook_attn_out", _RES, (_B + "attn.hook_out", _B + "attn.o.hook_out")),
    "resid_mid": Role(_B + "hook_resid_mid", _RES, (_B + "ln2.hook_in",)),
    "mlp_pre": Role(_B + "mlp.hook_pre", _MLP, (_B + "mlp.gate.hook_out", _B + "mlp.act.hook_in")),
    "mlp_pre_linear": Role(_B + "mlp.hook_pre_linear", _MLP, (_B + "mlp.in.hook_out",)),
    "mlp_post": Role(_B + "mlp.hook_post", _MLP, (_B + "mlp.out.hook_in",)),
    "mlp_out": Role(_B + "hook_mlp_out", _RES, (_B + "mlp.hook_out", _B + "mlp.out.hook_out")),
    "resid_post": Role(_B + "hook_resid_post", _RES, (_B + "hook_out",)),
}
# Norm internals and the MLP activation (native LLaDA / Dream). TL's `hook_normalized` is x / scale WITHOUT
# the weight; the norm's (weighted) output is `hook_out`.
NORM_ROLES = {
    "ln1_scale": Role(_B + "ln1.hook_scale", ("batch", "pos", "one")),
    "ln1_normalized": Role(_B + "ln1.hook_normalized", _RES),
    "ln1_out": Role(
        _B + "ln1.hook_out",
        _RES,
        (
            _B + "attn.hook_in",
            _B + "attn.q.hook_in",
            _B + "attn.k.hook_in",
            _B + "attn.v.hook_in",
            _B + "hook_attn_in",
            _B + "hook_q_input",
            _B + "hook_k_input",
            _B + "hook_v_input",
        ),
    ),
    "ln2_scale": Role(_B + "ln2.hook_scale", ("batch", "pos", "one")),
    "ln2_normalized": Role(_B + "ln2.hook_normalized", _RES),
    "ln2_out": Role(_B + "ln2.hook_out", _RES, (_B + "mlp.hook_in", _B + "mlp.gate.hook_in", _B + "mlp.in.hook_in")),
    "mlp_act": Role(_B + "mlp.act.hook_out", _MLP),
}
# Attention internals, in TL's layouts (k/v keep the GQA kv heads; q/k/v before rotary, rot_q/rot_k after: LLaDA
# only, as TL's adapters). scores / pattern exist only on a layer's eager path, which it takes while one of them is
# hooked (mdm_lens.families._layers.AttentionHooks); under a KV cache they cover the computed query columns only.
ATTN_ROLES = {
    "q": Role(_B + "attn.hook_q", ("batch", "pos", "n_heads", "d_head"), (_B + "attn.q.hook_out",)),
    "k": Role(_B + "attn.hook_k", ("batch", "pos", "n_kv_heads", "d_head"), (_B + "attn.k.hook_out",)),
    "v": Role(_B + "attn.hook_v", ("batch", "pos", "n_kv_heads", "d_head"), (_B + "attn.v.hook_out",)),
    "rot_q": Role(_B + "attn.hook_rot_q", ("batch", "pos", "n_heads", "d_head")),
    "rot_k": Role(_B + "attn.hook_rot_k", ("batch", "pos", "n_kv_heads", "d_head")),
    "attn_scores": Role(_B + "attn.hook_attn_scores", ("batch", "n_heads", "query", "key")),
    "pattern": Role(_B + "attn.hook_pattern", ("batch", "n_heads", "query", "key")),
    "z": Role(_B + "attn.hook_z", ("batch", "pos", "n_heads", "d_head"), (_B + "attn.o.hook_in",)),
    # each head's write `z[:, :, h] @ W_O[h]` before the sum; computed only while hooked (families/_head_result.py)
    "result": Role(_B + "attn.hook_result", ("batch", "pos", "n_heads", "d_model")),
}
GLOBAL_ROLE_TABLE = {
    "embed_in": Role("embed.hook_in", ("batch", "pos")),  # the token ids (long)
    "embed": Role("hook_embed", _RES, ("embed.hook_out",)),
    "rot_cos": Role("rotary_emb.hook_cos", ("batch_or_1", "pos", "d_head")),  # Dream: TL's rotary tables
    "rot_sin": Role("rotary_emb.hook_sin", ("batch_or_1", "pos", "d_head")),
    "scale": Role("ln_final.hook_scale", ("batch", "pos", "one")),
    "normalized": Role("ln_final.hook_normalized", _RES),
    "ln_final": Role("ln_final.hook_out", _RES, ("unembed.hook_in",)),
    "logits": Role("hook_logits", ("batch", "pos", "d_vocab"), ("hook_unembed", "unembed.hook_out")),
}
# Mixture-of-experts internals (LLaDA2.x, LLaDA-MoE: mdm_lens.families._moe), one contract for every MoE family:
# the gate's raw scores (ban an expert with -inf, force one with +inf), the chosen expert ids (int64, TL's name),
# their combine weights (TL's name), each chosen expert's output before weighting, the shared experts' output.
# The combined output stays `mlp_out`.
MOE_ROLES = {
    "router_logits": Role(_B + "mlp.hook_router_logits", ("batch", "pos", "n_experts")),
    "expert_indices": Role(_B + "mlp.hook_expert_indices", ("batch", "pos", "top_k")),
    "expert_weights": Role(_B + "mlp.hook_expert_weights", ("batch", "pos", "top_k")),
    "expert_out": Role(_B + "mlp.hook_expert_out", ("batch", "pos", "top_k", "d_model")),
    "shared_out": Role(_B + "mlp.hook_shared_out", _RES),
}
# roles computed only on demand (TL: `hook_result` fires only under `use_attn_result`): "every site" in a cache
# leaves them out unless `model.use_attn_result` is set; naming one caches it (the forward then computes it)
ON_DEMAND_ROLES = frozenset({"result"})
ROLES: dict[str, Role] = {**GLOBAL_ROLE_TABLE, **STEER_ROLES, **NORM_ROLES, **ATTN_ROLES, **MOE_ROLES}

# the order sites appear in a table: per layer as a forward computes them, the global ones around the blocks
LAYER_ORDER = (
    "resid_pre",
    "ln1_scale",
    "ln1_normalized",
    "ln1_out",
    "q",
    "k",
    "v",
    "rot_q",
    "rot_k",
    "attn_scores",
    "pattern",
    "z",
    "result",
    "attn_out",
    "resid_mid",
    "ln2_scale",
    "ln2_normalized",
    "ln2_out",
    "mlp_pre",
    "mlp_pre_linear",
    "mlp_act",
    "mlp_post",
    *MOE_ROLES,
    "mlp_out",
    "resid_post",
)
HEAD_ORDER = ("embed", "rot_cos", "rot_sin")
# the token ids (`embed.hook_in`, width 0) come last, so the site list opens with a real activation (hook_embed)
TAIL_ORDER = ("scale", "normalized", "ln_final", "logits", "embed_in")
assert set(LAYER_ORDER + HEAD_ORDER + TAIL_ORDER) == set(ROLES)

# name templates, the form most callers want: per-layer steering roles, and the global ones
LAYER_ROLES = {r: role.template for r, role in STEER_ROLES.items()}
GLOBAL_ROLES = {r: role.template for r, role in GLOBAL_ROLE_TABLE.items()}


def aliases_of(role: str, layer: int | None, n_layers: int, roles_present: set[str]) -> tuple[str, ...]:
    """TL-bridge names of the site `role` at `layer`: the role's alias templates, plus the two that depend on
    the model (`ln_final.hook_in` = the last block's output; `rotary_emb.hook_in` = the embeddings, where the
    family exposes rotary tables)."""
    out = [a.format(l=layer) for a in ROLES[role].aliases]
    if role == "resid_post" and layer == n_layers - 1:
        out.append("ln_final.hook_in")
    if role == "embed" and "rot_cos" in roles_present:
        out.append("rotary_emb.hook_in")
    return tuple(out)


# TL's get_act_name tables (transformer_lens.utilities.get_act_name)
_TL_LAYER_TYPES = {"a": "attn", "m": "mlp", "b": "", "block": "", "blocks": "", "attention": "attn"}
_TL_ALIASES = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "key": "k",
    "query": "q",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_mid": "mid",
    "mlp_post": "post",
}
_TL_ATTN = {"k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores"}
_TL_MLP = {"pre", "post", "mid", "pre_linear"}
_COMPACT = re.compile(r"([a-z]+)(\d+)([a-z]?.*)")
# mdm-lens roles TL's builder does not know (it would return names that cannot exist): taken from ROLES
_OWN = {"mlp_pre_linear", "embed_in", "rot_cos", "rot_sin", "ln_final", *NORM_ROLES, *MOE_ROLES}


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """TransformerLens' `get_act_name`, result for result: `("mlp_out", 3) -> "blocks.3.hook_mlp_out"`,
    `("pattern", 1)`, `("scale", 1, "ln1")`, compact `"k6"`, full names unchanged. Like TL it validates
    nothing (`model.site(name)` does); it also knows mdm-lens's own roles (`ROLES`: `mlp_pre_linear`,
    `ln1_scale`, `ln_final`, ...) and refuses a per-layer role without a layer (TL would build a global name
    that no model has)."""
    if not isinstance(name, str):
        raise TypeError(
            f"get_act_name(name={name!r}, ...): name is a site role or name string, e.g. get_act_name('resid_post', 0)"
        )
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, Integral)):
        raise TypeError(f"get_act_name({name!r}, layer={layer!r}): layer must be an integer block index")
    if name in _OWN and layer_type is None:
        role = ROLES[name]
        if role.per_layer and layer is None:
            raise ValueError(f"site role {name!r} needs a layer index, e.g. get_act_name({name!r}, 0)")
        return role.template.format(l=int(layer)) if role.per_layer else role.template
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    if layer is None and layer_type is None and name in ROLES and ROLES[name].per_layer:
        raise ValueError(f"site role {name!r} needs a layer index, e.g. get_act_name({name!r}, 0)")
    match = _COMPACT.match(name)
    if match is not None:
        name, layer, layer_type = match.groups(0)
    name = _TL_ALIASES.get(name, name)
    out = "" if layer is None else f"blocks.{layer}."
    if name in _TL_ATTN:
        layer_type = "attn"
    elif name in _TL_MLP:
        layer_type = "mlp"
    elif layer_type in _TL_LAYER_TYPES:
        layer_type = _TL_LAYER_TYPES[layer_type]
    if layer_type:
        out += f"{layer_type}."
    out += f"hook_{name}"
    if name in ("scale", "normalized") and layer is None:
        out = f"ln_final.{out}"
    return out


def check_roles(roles, where: str = "roles") -> list[str]:
    """Per-layer steering roles (`LAYER_ROLES`), validated: an unknown one raises naming the valid ones."""
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
