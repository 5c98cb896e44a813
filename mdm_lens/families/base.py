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
    role: str = ""          # resid_pre, attn_out, mlp_pre, ...: `get_act_name(role, layer) == name`
    aliases: tuple[str, ...] = ()
    shape: tuple[int | str, ...] = ()


@dataclass
class FamilySpec:
    """One model family: ids, chat use, recommended sampling and its site table."""

    name: str                                   # "llada", "dream", "diffusion_gemma"
    model_types: tuple[str, ...]                # config.json model_type values that select it
    architectures: tuple[str, ...]              # config.json architectures values that select it
    default_mask_id: int
    sampler: str                                # "llada" or "dream": which reference sampler
    recommended: dict[str, Any] = field(default_factory=dict)   # sampler kwargs defaults
    logits_shift: bool = False                  # Dream: state at j-1 predicts token j
    build_sites: Callable[[nn.Module], list[Site]] | None = None
    # layers whose weights write into the residual stream, for folding directional ablation
    residual_writers: Callable[[nn.Module], list[str]] | None = None
    # sizes in TransformerLens' words (n_layers, d_model, n_heads, n_kv_heads, d_head, d_mlp, d_vocab, n_ctx,
    # eps, embed / unembed parameter names): `HookedMDM.cfg`, site shapes
    dims: Callable[[nn.Module], dict[str, Any]] | None = None

    @property
    def length_key(self) -> str:
        """The sampler option that sets the response length: `gen_length` (LLaDA) / `max_new_tokens` (Dream)."""
        return LENGTH_KEYS.get(self.sampler, "max_new_tokens")


LENGTH_KEYS = {"llada": "gen_length", "dream": "max_new_tokens"}
