"""TransformerLens's circuit surface on HookedMDM: per-head weights (`W_Q`, `W_K`, `W_V`, their biases where the
family has them), the `QK` / `OV` factored matrices, `model.blocks[l]` weight views, and TL's persistent hooks
(`add_hook` / `reset_hooks`). A mixin, so hooked.py keeps the core; values equal TL 4.3's bridge on the same
weights (tests/test_tl_circuits.py, goldens by scripts/make_tl_circuit_goldens.py).

Layouts are TL's: `W_Q [n_layers, n_heads, d_model, d_head]`; `W_K` / `W_V` / `b_K` / `b_V` keep the GQA kv heads
(`n_key_value_heads`), as TL's bridge does; `QK` / `OV` expand them (head h reads kv head h // group).
A family without a bias raises AttributeError naming it, as TL does (LLaDA has none; Dream has b_Q, b_K, b_V).

Hooks. mdm-lens's hooks are context-managed (`with model.hooks({...})`); TL's `add_hook` keeps a hook until
`reset_hooks()` (or, `is_permanent=True`, until `reset_hooks(including_permanent=True)`). Both may be active at
once; TL hooks run after the context-managed ones of the same site only if added later (registration order).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Callable

import torch
from jaxtyping import Float

from .factored_matrix import FactoredMatrix
from .tl_moe import ExpertWeights, mlp_view


class BlockView:
    """`model.blocks[l]`: TL's per-layer names (`.attn.W_Q`, `.mlp.W_in`, ...) over the native modules (`.module`)."""

    def __init__(self, model, layer: int):
        self.layer, self._model = layer, model
        self.attn = _Part(model, layer, ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"))
        self.mlp = mlp_view(model, layer)  # dense: W_in ...; MoE: experts[e].W_in, shared_experts, W_router

    @property
    def module(self) -> torch.nn.Module:
        """The native block module (its attention module for a family that nests it, e.g. Dream's layer)."""
        path = self._model.site(f"blocks.{self.layer}.hook_resid_pre").module_path
        return self._model.model.get_submodule(path.rsplit(".", 1)[0])

    def __repr__(self) -> str:
        return f"BlockView(layer={self.layer})"


class _Part:
    def __init__(self, model, layer: int, names: tuple[str, ...]):
        self._model, self._layer, self._names = model, layer, names

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self._names:
            raise AttributeError(name)
        return getattr(self._model, name)[self._layer]

    def __dir__(self):
        return list(self._names)


class TLCircuits:
    """Mixed into HookedMDM (needs `model`, `site`, `_dims`, `n_layers`, `W_O`, `hooks`, `all_hook_names`)."""

    # ------------------------------------------------------------------ per-head results (TL's use_attn_result)
    @property
    def use_attn_result(self) -> bool:
        """Whether every layer computes `blocks.{l}.attn.hook_result` whether hooked or not (TL's
        `cfg.use_attn_result`); a hooked layer computes it either way."""
        from .families._head_result import HeadResultLinear

        return any(m.use_attn_result for m in self.model.modules() if isinstance(m, HeadResultLinear))

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """TL's `set_use_attn_result`: per-head results at every layer (n_heads times an attention output of
        memory per layer); needed for tools whose wrappers are not torch hooks (nnsight)."""
        from .families._head_result import set_use_attn_result

        set_use_attn_result(self.model, use_attn_result)

    # ------------------------------------------------------------------ projections
    def _attn_owner(self, layer: int) -> str:
        """Module path of the module holding this layer's q/k/v projections (the parent of its attention hooks)."""
        path = self.site(f"blocks.{layer}.attn.hook_z").module_path
        parts = path.split(".")
        for n in range(len(parts) - 1, 0, -1):  # the nearest ancestor holding the projections (q_proj or fused)
            owner = ".".join(parts[:n])
            mod = self.model.get_submodule(owner)
            if hasattr(mod, "q_proj") or hasattr(mod, "query_key_value"):
                return owner
        raise NotImplementedError(f"the {self.spec.name} family has no q_proj / query_key_value near {path}")

    def _proj(self, layer: int, which: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight `[heads * d_head, d_model]`, bias or None) of this layer's q, k or v projection; a fused
        `query_key_value` (LLaDA2) is sliced as its forward splits it: q heads, then k heads, then v heads."""
        owner = self.model.get_submodule(self._attn_owner(layer))
        lin = getattr(owner, f"{which}_proj", None)
        if isinstance(lin, torch.nn.Linear):
            return lin.weight, lin.bias
        fused = getattr(owner, "query_key_value", None)
        if not isinstance(fused, torch.nn.Linear):
            raise NotImplementedError(f"the {self.spec.name} family has no single {which}_proj linear layer")
        d = self._dims()
        sizes = [self._heads(w) * d["d_head"] for w in "qkv"]
        start = sum(sizes[: "qkv".index(which)])
        rows = slice(start, start + sizes["qkv".index(which)])
        return fused.weight[rows], None if fused.bias is None else fused.bias[rows]

    def _heads(self, which: str) -> int:
        d = self._dims()
        return d["n_heads"] if which == "q" else (d.get("n_kv_heads") or d["n_heads"])

    def _stack_w(self, which: str) -> torch.Tensor:
        d = self._dims()
        h = self._heads(which)
        return torch.stack(
            [
                self._proj(layer, which)[0].reshape(h, d["d_head"], d["d_model"]).transpose(-1, -2)
                for layer in range(self.n_layers)
            ]
        )

    def _stack_b(self, which: str, name: str) -> torch.Tensor:
        d = self._dims()
        biases = [self._proj(layer, which)[1] for layer in range(self.n_layers)]
        if any(b is None for b in biases):
            raise AttributeError(
                f"{name}: the {self.spec.name} family's {which} projection has no bias (TL raises too); "
                "use torch.zeros if an analysis needs one"
            )
        return torch.stack([b.reshape(self._heads(which), d["d_head"]) for b in biases])

    @property
    def W_Q(self) -> Float[torch.Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack_w("q")

    @property
    def W_K(self) -> Float[torch.Tensor, "n_layers n_kv_heads d_model d_head"]:
        return self._stack_w("k")

    @property
    def W_V(self) -> Float[torch.Tensor, "n_layers n_kv_heads d_model d_head"]:
        return self._stack_w("v")

    @property
    def b_Q(self) -> Float[torch.Tensor, "n_layers n_heads d_head"]:
        return self._stack_b("q", "b_Q")

    @property
    def b_K(self) -> Float[torch.Tensor, "n_layers n_kv_heads d_head"]:
        return self._stack_b("k", "b_K")

    @property
    def b_V(self) -> Float[torch.Tensor, "n_layers n_kv_heads d_head"]:
        return self._stack_b("v", "b_V")

    def _linear_bias(self, role: str, name: str) -> torch.Tensor:
        from .sites import get_act_name

        from .tl_moe import check_dense

        out = []
        for layer in range(self.n_layers):
            check_dense(self, layer, role)
            lin = self.site(get_act_name(role, layer)).linear
            bias = None if lin is None else self.model.get_submodule(lin).bias
            if bias is None:
                raise AttributeError(
                    f"{name}: the {self.spec.name} family has no bias there (TL raises too); use "
                    "torch.zeros if an analysis needs one"
                )
            out.append(bias)
        return torch.stack(out)

    @property
    def b_O(self) -> Float[torch.Tensor, "n_layers d_model"]:
        return self._linear_bias("attn_out", "b_O")

    @property
    def b_in(self) -> Float[torch.Tensor, "n_layers d_mlp"]:
        return self._linear_bias("mlp_pre_linear", "b_in")

    @property
    def b_out(self) -> Float[torch.Tensor, "n_layers d_model"]:
        return self._linear_bias("mlp_out", "b_out")

    def _expand_kv(self, w: torch.Tensor) -> torch.Tensor:
        group = self._heads("q") // self._heads("k")
        return w if group == 1 else w.repeat_interleave(group, dim=1)

    @property
    def QK(self) -> FactoredMatrix:
        """`W_Q @ W_K^T` per layer and head, `[n_layers, n_heads, d_model, d_model]`, kept factored."""
        return FactoredMatrix(self.W_Q, self._expand_kv(self.W_K).transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """`W_V @ W_O` per layer and head, `[n_layers, n_heads, d_model, d_model]`, kept factored."""
        return FactoredMatrix(self._expand_kv(self.W_V), self.W_O)

    # ------------------------------------------------------------------ mixture-of-experts layers (tl_moe.py)
    @property
    def moe_layers(self) -> list[int]:
        """Indices of the mixture-of-experts layers (empty for a dense family)."""
        from .tl_moe import moe_layers

        return moe_layers(self)

    def expert_weights(self, layer: int) -> ExpertWeights:
        """Routed experts of MoE layer `layer`, stacked in TL's layout: `.W_gate` / `.W_in`
        `[n_experts, d_model, d_expert]`, `.W_out` `[n_experts, d_expert, d_model]`."""
        from .tl_moe import expert_weights

        return expert_weights(self, layer)

    def shared_expert_weights(self, layer: int) -> ExpertWeights | None:
        """Shared experts of MoE layer `layer` (`.W_gate`, `.W_in` `[d_model, d_shared]`, `.W_out`), or None."""
        from .tl_moe import shared_expert_weights

        return shared_expert_weights(self, layer)

    @property
    def blocks(self) -> list[BlockView]:
        """TL's `model.blocks[l].attn.W_Q` etc. as views over the native weights (hooks go by name, not here)."""
        return [BlockView(self, layer) for layer in range(self.n_layers)]

    # ------------------------------------------------------------------ TL's persistent hooks
    def _tl_state(self) -> dict[str, Any]:
        st = self.__dict__.get("_tl_hook_state")
        if st is None:
            st = self.__dict__["_tl_hook_state"] = {"hooks": [], "stack": None}
        return st

    def add_hook(
        self,
        name: str | Callable[[str], bool],
        hook: Callable,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """TL's `add_hook`: `hook(tensor, hook=h)` on a site (or on every site whose name the predicate accepts,
        each site once however many of its names match) for every forward until `reset_hooks()`;
        `is_permanent=True` survives that. Backward hooks are not supported."""
        from .tl_conveniences import _tl_fn

        if dir != "fwd":
            raise NotImplementedError(f"dir={dir!r}: only forward hooks are supported")
        if level is not None or prepend:
            raise NotImplementedError("level= and prepend= are not supported; hooks run in the order added")
        if callable(name) and not isinstance(name, str):
            seen, names = set(), []
            for n in self.all_hook_names:
                if name(n) and self.site(n).name not in seen:
                    seen.add(self.site(n).name)
                    names.append(n)
        else:
            self.site(name)  # an unknown name fails here, naming the closest real ones
            names = [name]
        st = self._tl_state()
        st["hooks"] += [(n, _tl_fn(hook, n, self.site(n).layer), is_permanent) for n in names]
        self._reattach_tl_hooks()

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: str = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """TL's `reset_hooks`: removes the hooks `add_hook` added (permanent ones only with `including_permanent`).
        Context-managed hooks (`with model.hooks(...)`, `steer`, `cache_steps`) end with their block, not here."""
        st = self._tl_state()
        st["hooks"] = [h for h in st["hooks"] if h[2] and not including_permanent]
        self._reattach_tl_hooks()

    def _reattach_tl_hooks(self) -> None:
        st = self._tl_state()
        if st["stack"] is not None:
            st["stack"].close()
            st["stack"] = None
        if not st["hooks"]:
            return
        spec: dict[str, list] = {}
        for n, fn, _ in st["hooks"]:
            spec.setdefault(n, []).append(fn)
        stack = ExitStack()
        stack.enter_context(self.hooks(spec))
        st["stack"] = stack

    @property
    def tl_hooks(self) -> list[tuple[str, bool]]:
        """The hooks `add_hook` keeps: (name, is_permanent), in the order they run."""
        return [(n, p) for n, _, p in self._tl_state()["hooks"]]
