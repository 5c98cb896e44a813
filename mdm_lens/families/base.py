"""What a model family must declare so the wrapper can hook, sample and fold it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from torch import nn

SiteKind = Literal["output", "input"]


@dataclass(frozen=True)
class Site:
    """A canonical hook site: the tensor is the output (or first input) of the module at `module_path`.

    `linear` names the nn.Linear / nn.Embedding whose output *is* this tensor (None when no single
    layer writes it); folding an affine map into that layer's weights is then exact. `role` is the
    kind of tensor (a key of `mdm_lens.sites.ROLES`), so code can ask for "every mlp_out" without parsing
    names. `aliases` are other names of the same tensor (TL-bridge component names: a hook on one is a
    hook on this site); `shape` its layout: ints for this model's sizes, strings for batch / pos / query / key.
    """

    name: str
    module_path: str
    kind: SiteKind = "output"
    layer: int | None = None
    width: int = 0
    linear: str | None = None
    role: str = ""  # resid_pre, attn_out, mlp_pre, ...: `get_act_name(role, layer) == name`
    aliases: tuple[str, ...] = ()
    shape: tuple[int | str, ...] = ()


@dataclass(frozen=True)
class FastSupport:
    """A family's Fast-dLLM path (`HookedMDM.generate(sampler="fast")`, `mdm_lens.fast_path`).

    `sampler()` returns the KV-cached sampler (imported on use); `mask_kwarg` is its mask-id argument;
    `defaults` the options the fast path adds under the recommended settings; `no_op` the reference-only
    settings with the value at which they change nothing (dropped then, refused otherwise); `prepare(kwargs,
    attention_mask)` the family's own adjustments of the call (padding, settings it reads differently)."""

    sampler: Callable[[], Callable[..., Any]]
    mask_kwarg: str
    defaults: dict[str, Any] = field(default_factory=dict)
    no_op: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[dict[str, Any], Any], None] | None = None


@dataclass
class FamilySpec:
    """Everything the rest of the package asks a model family: ids, chat use, its sampler and recommended
    settings, sizes, sites, loading facts and a tiny test config. One family = one file under
    `mdm_lens/families/` that fills this in and is listed in `mdm_lens.families` (or `register_family`)."""

    name: str  # "llada", "dream", "diffusion_gemma"
    model_types: tuple[str, ...]  # config.json model_type values that select it
    architectures: tuple[str, ...]  # config.json architectures values that select it
    default_mask_id: int
    sampler: str  # the sampler's name (StepInfo, reports): "llada", "dream", ...
    recommended: dict[str, Any] = field(default_factory=dict)  # sampler kwargs defaults
    logits_shift: bool = False  # Dream: state at j-1 predicts token j
    build_sites: Callable[[nn.Module], list[Site]] | None = None
    # layers whose weights write into the residual stream, for folding directional ablation
    residual_writers: Callable[[nn.Module], list[str]] | None = None
    # MoE families: layer -> (routed experts' down projections, shared experts' down projections), the layers
    # writing that layer's MoE output (hook_mlp_out), for folding maps exactly (interventions.fold_moe)
    moe_writers: Callable[[nn.Module, int], tuple[list[str], list[str]]] | None = None
    # sizes in TransformerLens' words (n_layers, d_model, n_heads, n_kv_heads, d_head, d_mlp, d_vocab, n_ctx,
    # eps, embed / unembed parameter names): `HookedMDM.cfg`, site shapes
    dims: Callable[[nn.Module], dict[str, Any]] | None = None
    # -------- sampling
    length_key: str = "max_new_tokens"  # the sampler option that sets the response length
    position_key: str | None = None  # config.json field of the trained length (warned past it)
    # generate(model, input_ids, attention_mask, settings, on_step=, trace=, return_history=) -> sequences
    generate: Callable[..., Any] | None = None
    fast: FastSupport | None = None  # Fast-dLLM's KV-cached sampler, where the family has one
    # why a full forward of a step's input canvas is NOT the forward the sampler made under these settings
    # (block-causal attention over a growing window, ...), or None where it is; None: always faithful.
    # The per-step logit lens and trace viewer replay steps this way (mdm_lens.step_replay)
    step_forward_refusal: Callable[[dict[str, Any]], str | None] | None = None
    # why `generate(replay=...)` cannot run on this family's sampler, or None where the sampler takes a schedule
    replay_refusal: str | None = None
    # -------- loading
    build_model: Callable[[dict[str, Any]], nn.Module] | None = None
    # a loader of its own (folder, dtype, device, device_map) -> module, for families served by transformers
    from_pretrained: Callable[..., nn.Module] | None = None
    size_fields: tuple[str, ...] = ()  # config.json size fields: layers, width, heads, kv heads, ...
    size_section: str | None = None  # the config.json sub-dict holding them (None: the top level)
    heads_split_width: bool = True  # whether the width must be a multiple of the head count
    # -------- testing
    tiny_config: Callable[..., dict[str, Any]] | None = None  # config.json of a tiny model, overrides applied
    tokenizer_style: str | None = None  # `mdm_lens.tiny_tokenizer` style of its offline test tokenizer
    hub_keys: Callable[[Any], list[str]] | None = None  # parameter names of a hub checkpoint of a config


def resolve_mask_id(config: dict[str, Any], tokenizer: Any, spec: FamilySpec) -> int:
    """config.json's mask_token_id, else the tokenizer's mask token, else the family default (a present 0 counts:
    it is a valid id, so presence is tested with `is not None`, never with truthiness)."""
    if config.get("mask_token_id") is not None:
        return int(config["mask_token_id"])
    if tokenizer is not None and getattr(tokenizer, "mask_token_id", None) is not None:
        return int(tokenizer.mask_token_id)
    return spec.default_mask_id
