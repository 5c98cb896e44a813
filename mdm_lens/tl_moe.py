"""TransformerLens's MLP weight surface on mixture-of-experts layers (LLaDA2.x, LLaDA-MoE).

TL's MoE convention is per expert: `model.blocks[l].mlp.experts[e].W_in` (and `.W_gate`, `.W_out`), with the
router at `model.blocks[l].mlp.W_gate` `[d_model, n_experts]`. Both are offered here as views over the native
weights, plus the stacked array form an analysis usually wants (`model.expert_weights(l)`:
`W_in [n_experts, d_model, d_expert]`), and the shared experts (`model.shared_expert_weights(l)`, None where the
layer has none). WHY the plain `model.W_in` / `blocks[l].mlp.W_in` raise on an MoE layer instead of returning
something: a mixture of experts has no single input matrix, and silently handing back one expert (or a
concatenation) would make weight-based analyses (neuron directions, OV/MLP circuits) quietly wrong.
Dense layers of the same model (LLaDA2's `first_k_dense_replace`, LLaDA-MoE's `moe_layer_freq` 0) keep TL's
`W_in` / `W_gate` / `W_out`, per layer through `model.blocks[l].mlp`.

Layouts are TL's (`x @ W`): `W_gate`, `W_in` `[d_model, d_hidden]`, `W_out` `[d_hidden, d_model]`; an expert
computes `(silu(x @ W_gate) * (x @ W_in)) @ W_out`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from .families._moe import ExpertMLP, MoEBlock
from .sites import get_act_name

_TL_NAMES = {"mlp_pre": "W_gate", "mlp_pre_linear": "W_in", "mlp_out": "W_out"}


@dataclass(frozen=True)
class ExpertWeights:
    """One SwiGLU expert's weights (2-D) or every routed expert's stacked (leading `n_experts` axis), TL layout."""

    W_gate: Float[torch.Tensor, "*experts d_model d_hidden"]
    W_in: Float[torch.Tensor, "*experts d_model d_hidden"]
    W_out: Float[torch.Tensor, "*experts d_hidden d_model"]


def _weights(mlp: ExpertMLP) -> ExpertWeights:
    return ExpertWeights(mlp.gate_proj.weight.T, mlp.up_proj.weight.T, mlp.down_proj.weight.T)


def moe_block(model: Any, layer: int) -> MoEBlock | None:
    """The layer's MoE block, or None for a dense layer (and for every layer of a dense family)."""
    path = model.site(get_act_name("mlp_out", layer)).module_path
    mod = model.model.get_submodule(path)
    return mod if isinstance(mod, MoEBlock) else None


def moe_layers(model: Any) -> list[int]:
    return [layer for layer in range(model.n_layers) if moe_block(model, layer) is not None]


def check_dense(model: Any, layer: int, role: str) -> None:
    """Raise, naming the layer and the accessors to use, when a dense-MLP weight is asked of an MoE layer."""
    if role in _TL_NAMES and moe_block(model, layer) is not None:
        raise moe_weight_error(model, layer, _TL_NAMES[role])


def moe_weight_error(model: Any, layer: int, name: str) -> TypeError:
    return TypeError(
        f"{name}: layer {layer} of this {model.spec.name} model is a mixture of experts, so it has no single "
        f"{name}; use model.expert_weights({layer}).{name} ([n_experts, ...], routed experts), "
        f"model.blocks[{layer}].mlp.experts[e].{name} (one expert, TL's form) or "
        f"model.shared_expert_weights({layer}).{name} (shared experts); dense layers: {dense_layers(model)}"
    )


def dense_layers(model: Any) -> list[int]:
    return [layer for layer in range(model.n_layers) if moe_block(model, layer) is None]


def _require_moe(model: Any, layer: int) -> MoEBlock:
    if not 0 <= layer < model.n_layers:
        raise IndexError(f"layer={layer} is out of range 0..{model.n_layers - 1}")
    block = moe_block(model, layer)
    if block is None:
        raise TypeError(
            f"layer {layer} of this {model.spec.name} model is a dense MLP, not a mixture of experts; use "
            f"model.blocks[{layer}].mlp.W_in etc.; MoE layers: {moe_layers(model)}"
        )
    return block


def expert_weights(model: Any, layer: int) -> ExpertWeights:
    """Every routed expert of MoE layer `layer`, stacked: `W_in [n_experts, d_model, d_expert]` etc."""
    block = _require_moe(model, layer)
    per = [_weights(e) for e in block.experts]  # type: ignore[arg-type]
    return ExpertWeights(*(torch.stack([getattr(w, n) for w in per]) for n in ("W_gate", "W_in", "W_out")))


def shared_expert_module(model: Any, layer: int) -> ExpertMLP | None:
    _require_moe(model, layer)
    try:
        down = model.site(get_act_name("shared_out", layer)).linear
    except KeyError:
        return None
    if down is None:
        return None
    mod = model.model.get_submodule(down.rsplit(".", 1)[0])
    return mod if isinstance(mod, ExpertMLP) else None


def shared_expert_weights(model: Any, layer: int) -> ExpertWeights | None:
    """The shared experts of MoE layer `layer` as one SwiGLU (LLaDA2 fuses its shared experts into one wider
    FFN, as the checkpoint stores them), or None where the layer has none."""
    mod = shared_expert_module(model, layer)
    return None if mod is None else _weights(mod)


class ExpertView:
    """TL's `model.blocks[l].mlp.experts[e]`: `W_gate`, `W_in`, `W_out` over the native expert (`.module`)."""

    def __init__(self, module: ExpertMLP):
        self.module = module

    @property
    def W_gate(self) -> Float[torch.Tensor, "d_model d_hidden"]:
        return self.module.gate_proj.weight.T

    @property
    def W_in(self) -> Float[torch.Tensor, "d_model d_hidden"]:
        return self.module.up_proj.weight.T

    @property
    def W_out(self) -> Float[torch.Tensor, "d_hidden d_model"]:
        return self.module.down_proj.weight.T


class MoEMLPView:
    """`model.blocks[l].mlp` on an MoE layer: `experts[e]`, `shared_experts` (or None), and the router as TL
    names it, `W_gate [d_model, n_experts]` (also `W_router`). `W_in` / `W_out` raise (no single matrix)."""

    def __init__(self, model: Any, layer: int, block: MoEBlock):
        self._model, self._layer, self.module = model, layer, block
        self.experts = [ExpertView(e) for e in block.experts]  # type: ignore[arg-type]
        shared = shared_expert_module(model, layer)
        self.shared_experts = None if shared is None else ExpertView(shared)

    @property
    def W_gate(self) -> Float[torch.Tensor, "d_model n_experts"]:
        """The router (TL's MoE `W_gate`), not an expert's gate projection: those are `experts[e].W_gate`."""
        return self.module.gate.weight.T

    W_router = W_gate

    @property
    def W_in(self) -> torch.Tensor:
        raise moe_weight_error(self._model, self._layer, "W_in")

    @property
    def W_out(self) -> torch.Tensor:
        raise moe_weight_error(self._model, self._layer, "W_out")


class DenseMLPView:
    """`model.blocks[l].mlp` on a dense layer: TL's `W_gate`, `W_in`, `W_out`, `b_in`, `b_out` for this layer."""

    def __init__(self, model: Any, layer: int):
        self._model, self._layer = model, layer

    def _linear(self, role: str) -> torch.nn.Linear:
        path = self._model.site(get_act_name(role, self._layer)).linear
        if path is None:
            raise NotImplementedError(f"no single linear layer writes {role!r} in the {self._model.spec.name} family")
        return self._model.model.get_submodule(path)

    @property
    def W_gate(self) -> Float[torch.Tensor, "d_model d_mlp"]:
        return self._linear("mlp_pre").weight.T

    @property
    def W_in(self) -> Float[torch.Tensor, "d_model d_mlp"]:
        return self._linear("mlp_pre_linear").weight.T

    @property
    def W_out(self) -> Float[torch.Tensor, "d_mlp d_model"]:
        return self._linear("mlp_out").weight.T

    def _bias(self, role: str, name: str) -> torch.Tensor:
        bias = self._linear(role).bias
        if bias is None:
            raise AttributeError(f"{name}: the {self._model.spec.name} family has no bias there (TL raises too)")
        return bias

    @property
    def b_in(self) -> Float[torch.Tensor, " d_mlp"]:
        return self._bias("mlp_pre_linear", "b_in")

    @property
    def b_out(self) -> Float[torch.Tensor, " d_model"]:
        return self._bias("mlp_out", "b_out")


def mlp_view(model: Any, layer: int) -> MoEMLPView | DenseMLPView:
    block = moe_block(model, layer)
    return DenseMLPView(model, layer) if block is None else MoEMLPView(model, layer, block)
