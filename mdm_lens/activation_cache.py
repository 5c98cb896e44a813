"""ActivationCache: the activations of one forward, with TransformerLens 4.3's lookups and residual tools.

Semantics follow TL's `ActivationCache` (checked against goldens from TL's own bridge, tests/test_tl_parity.py):
`cache["resid_post", 3]` / `cache["pattern", 1]` / `cache["scale"]` go through `get_act_name` (negative layers
count from the end), aliases (`blocks.0.mlp.hook_out`) resolve to the canonical site, and the residual-stream
methods (`accumulated_resid`, `decompose_resid`, `apply_ln_to_stack`, `logit_attrs`, `stack_activation`,
`stack_head_results`, `get_full_resid_decomposition`) return the same tensors and labels. The norms are RMSNorm
(no centring): applying "the LN" divides by the cached `hook_scale`, without the norm weight, exactly as TL does;
only `recompute_ln=True` on the final norm runs the real final norm (weight included).

The cache is a dict of canonical name -> tensor. It holds a reference to its model only for sizes, aliases and
weights (W_U, W_O, the final norm); a cache without a model (e.g. a loaded StepCache) still indexes by name.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence, Union

import torch
from jaxtyping import Float

from .sites import get_act_name
from .validate import check_ids_in_vocab, is_int, token_ids

PosSlice = Union[None, int, slice, Sequence[int], torch.Tensor, tuple]


def _index(x, dim: int):
    """TL's `Slice`: None = all, int = that index (the dim is dropped), (a, b[, c]) = slice(a, b, c), a list or
    tensor of indices = those positions."""
    if x is None:
        return slice(None)
    if isinstance(x, tuple):
        return slice(*x)
    if isinstance(x, (int, slice)):
        return x
    return torch.as_tensor(x)


def apply_slice(t: torch.Tensor, s: PosSlice, dim: int) -> torch.Tensor:
    if s is None:
        return t
    idx = [slice(None)] * t.dim()
    idx[dim] = _index(s, dim)
    return t[tuple(idx)]


def owned(act: torch.Tensor, ctx) -> torch.Tensor:
    """`act` detached, and copied when it shares memory with the forward's input ids (`embed.hook_in`): samplers
    edit their canvas in place after the forward, which would rewrite a kept reference."""
    act = act.detach()
    ids = ctx.input_ids
    if act.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr():
        act = act.clone()
    return act


class ActivationCache(dict):
    """Canonical site name -> activation of one forward pass (`run_with_cache`, `StepCache.at(step)`)."""

    def __init__(self, data: dict[str, torch.Tensor] | None = None, model: Any = None, has_batch_dim: bool = True):
        super().__init__(data or {})
        self.model = model
        self.has_batch_dim = has_batch_dim

    # ------------------------------------------------------------------ lookup
    @property
    def n_layers(self) -> int:
        if self.model is not None:
            return self.model.n_layers
        layers = [int(k.split(".")[1]) for k in self if k.startswith("blocks.")]
        return 1 + max(layers, default=-1)

    def resolve(self, key) -> str:
        """The canonical name a key means: an exact key, else `get_act_name(*key)` (a tuple; negative layers count
        from the end) or `get_act_name(key)` (a string), then alias -> canonical."""
        if isinstance(key, str) and dict.__contains__(self, key):
            return key
        if isinstance(key, tuple):
            name, *rest = key
            if rest and rest[0] is not None:
                rest[0] = self._layer_index(rest[0], key)
            name = get_act_name(name, *rest)
        elif isinstance(key, str):
            name = get_act_name(key)
        else:
            raise TypeError(f"cache keys are site names or (name, layer[, layer_type]) tuples, not {key!r}")
        if self.model is not None:
            name = self.model.canonical_name(name)
            if name not in self.model.sites and not dict.__contains__(self, name):
                self.model.site(name)  # an unknown role or name: its error names the closest
        return name

    def _layer_index(self, layer, key) -> int:
        """A layer of this model as an index (negative counts from the end); anything else is its own error."""
        n = self.n_layers
        if not is_int(layer):
            raise TypeError(f"layer {layer!r} in {key!r} must be an integer (0..{n - 1}, or -{n}..-1 from the end)")
        if not -n <= layer < n:
            raise IndexError(
                f"layer {layer} in {key!r} does not exist: this model has layers 0..{n - 1} (or -{n}..-1 from the end)"
            )
        return layer + n if layer < 0 else layer

    def __getitem__(self, key) -> torch.Tensor:
        try:
            name = self.resolve(key)
        except (ValueError, TypeError, IndexError) as e:
            raise KeyError(str(e)) from None
        if not dict.__contains__(self, name):
            near = sorted(self)[:8]
            raise KeyError(
                f"{key!r} (site {name!r}) was not cached; cached: {near}{'...' if len(self) > 8 else ''}. "
                "Cache it: run_with_cache(..., names_filter=[...]) or cache_steps([...])"
            )
        return dict.__getitem__(self, name)

    def __contains__(self, key) -> bool:
        try:
            return dict.__contains__(self, self.resolve(key))
        except (ValueError, TypeError, KeyError):
            return False

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} sites: {list(self)[:4]}{'...' if len(self) > 4 else ''})"

    # ------------------------------------------------------------------ whole-cache operations
    def to(self, device: str | torch.device) -> "ActivationCache":
        """Moves every tensor to `device` (in place); returns the cache."""
        for k, v in self.items():
            dict.__setitem__(self, k, v.to(device))
        return self

    def remove_batch_dim(self) -> "ActivationCache":
        """Batch size 1 only: drops dim 0 of every tensor whose dim 0 is 1 (in place); returns the cache."""
        if not self.has_batch_dim:
            return self
        sizes = [v.shape[0] for v in self.values() if v.dim() > 0]
        if sizes and max(set(sizes), key=sizes.count) != 1:
            raise ValueError(
                f"remove_batch_dim needs a batch of 1; this cache holds a batch of "
                f"{max(set(sizes), key=sizes.count)} (index a row first: cache[name][i])"
            )
        for k, v in self.items():
            if v.dim() > 0 and v.shape[0] == 1:
                dict.__setitem__(self, k, v[0])
        self.has_batch_dim = False
        return self

    def _need_model(self, what: str):
        if self.model is None:
            raise ValueError(
                f"{what} needs the model's weights or sizes; this cache has none "
                "(build it with model.run_with_cache, or StepCache.at(step, model=model))"
            )
        return self.model

    # ------------------------------------------------------------------ residual stream
    def _last(self, layer: int | None) -> int:
        n = self.n_layers
        if layer is None or layer == -1:
            return n
        if not 0 <= layer <= n:
            raise ValueError(f"layer {layer} out of range: use 0..{n} (or None / -1 for the final residual)")
        return layer

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ):
        """The residual stream before each block up to `layer` (None / -1: all, plus the final output), as
        `[component, batch, pos, d_model]`; labels `0_pre`, `0_mid`, ..., `final_post`. `apply_ln` divides by
        the cached scale of the norm that would read the last component (the final norm is recomputed)."""
        n, layer = self.n_layers, self._last(layer)
        parts, labels = [], []
        for l in range(layer + 1):
            if l == n:
                parts.append(self["resid_post", n - 1])
                labels.append("final_post")
                continue
            parts.append(self["resid_pre", l])
            labels.append(f"{l}_pre")
            if (incl_mid and l < layer) or (mlp_input and l == layer):
                parts.append(self["resid_mid", l])
                labels.append(f"{l}_mid")
        stack = torch.stack([apply_slice(p, pos_slice, -2) for p in parts])
        if apply_ln:
            stack = self.apply_ln_to_stack(
                stack, layer, mlp_input=mlp_input, pos_slice=pos_slice, recompute_ln=layer == n
            )
        return (stack, labels) if return_labels else stack

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ):
        """The residual stream at `layer` as the sum of what wrote it: `embed`, then `{l}_attn_out` and
        `{l}_mlp_out` per block (`mode` "attn" / "mlp" keeps one kind). `[component, batch, pos, d_model]`."""
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f"mode must be 'all', 'attn' or 'mlp', not {mode!r}")
        layer = self._last(layer)
        parts, labels = [], []
        if incl_embeds:
            for name, label in (("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")):
                if name in self:
                    parts.append(self[name])
                    labels.append(label)
        for l in range(layer):
            if mode != "mlp":
                parts.append(self["attn_out", l])
                labels.append(f"{l}_attn_out")
            if mode != "attn":
                parts.append(self["mlp_out", l])
                labels.append(f"{l}_mlp_out")
        if mlp_input and mode != "mlp":
            parts.append(self["attn_out", layer])
            labels.append(f"{layer}_attn_out")
        stack = torch.stack([apply_slice(p, pos_slice, -2) for p in parts])
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    def apply_ln_to_stack(
        self,
        residual_stack: Float[torch.Tensor, "comp *batch_pos d"],
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: PosSlice = None,
        batch_slice: PosSlice = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> torch.Tensor:
        """Each component through the norm that reads the stream at `layer` (None / -1 / n_layers: the final
        norm; else ln1, or ln2 with `mlp_input`), using that norm's CACHED scale of the real forward (the
        components are not renormalised on their own, so they still sum to the normalised stream) and no weight.
        `pos_slice` / `batch_slice` select the scale's positions / rows (slice the stack yourself first).
        `recompute_ln=True` (final norm only) instead runs the model's final norm on every component."""
        n = self.n_layers
        if layer is not None and not (is_int(layer) and -1 <= layer <= n):
            raise ValueError(
                f"layer={layer!r}: the norm reading the stream at a layer in 0..{n - 1}, or None / -1 / "
                f"{n} for the final norm (this model has {n} layers)"
            )
        final = layer is None or layer == -1 or layer == n
        if has_batch_dim and self.has_batch_dim:
            residual_stack = apply_slice(residual_stack, batch_slice, 1)
        if recompute_ln:
            if not final:
                raise ValueError("recompute_ln applies to the final norm only (layer None, -1 or n_layers)")
            return self._final_norm()(residual_stack)
        scale = self["ln_final.hook_scale"] if final else self[f"blocks.{layer}.ln{2 if mlp_input else 1}.hook_scale"]
        scale = apply_slice(scale, pos_slice, -2)
        if self.has_batch_dim:
            scale = apply_slice(scale, batch_slice, 0)
        return residual_stack / scale

    def _final_norm(self) -> Callable[[torch.Tensor], torch.Tensor]:
        model = self._need_model("recompute_ln")
        norm = model.model.get_submodule(model.site(get_act_name("ln_final")).module_path)
        if hasattr(norm, "hook_scale"):  # native RMSNorm: its formula, so no hook on it ever fires

            def apply(x: torch.Tensor) -> torch.Tensor:
                h = x.float()
                h = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps)).to(x.dtype)
                h = norm.weight * h
                return h + norm.bias if norm.bias is not None else h

            return apply
        return norm

    def logit_attrs(
        self,
        residual_stack: torch.Tensor,
        tokens,
        incorrect_tokens=None,
        pos_slice: PosSlice = None,
        batch_slice: PosSlice = None,
        has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """How much each component adds to the logit of `tokens` (minus `incorrect_tokens`): the stack through
        the final norm's cached scale (no weight), dotted with the unembedding columns. `tokens`: an id, a
        string (one token), or a tensor of ids ([batch]: one per example; [batch, pos])."""
        model = self._need_model("logit_attrs")
        dirs = self._token_dirs(model, tokens)
        if incorrect_tokens is not None:
            wrong = self._token_dirs(model, incorrect_tokens)
            if wrong.shape != dirs.shape:
                raise ValueError(
                    f"tokens and incorrect_tokens must have the same shape, got {tuple(dirs.shape)[:-1]} "
                    f"and {tuple(wrong.shape)[:-1]}"
                )
            dirs = dirs - wrong
        scaled = self.apply_ln_to_stack(
            residual_stack, layer=-1, pos_slice=pos_slice, batch_slice=batch_slice, has_batch_dim=has_batch_dim
        )
        if dirs.dim() == 2 and scaled.dim() == 4:  # one token per example: broadcast over positions
            dirs = dirs[:, None]
        lead_s, lead_d = tuple(scaled.shape[1:-1]), tuple(dirs.shape[:-1])
        if dirs.dim() > 1 and (
            len(lead_d) > len(lead_s) or any(a not in (b, 1) for a, b in zip(lead_d[::-1], lead_s[::-1]))
        ):
            raise ValueError(
                f"tokens give shape {lead_d} but the residual stack's examples are {lead_s} "
                "([batch] or [batch, pos] after its component dim); pass one token per example "
                "(same batch size), or slice the stack / tokens to match"
            )
        return (scaled * dirs.to(scaled.dtype)).sum(-1)

    @staticmethod
    def _token_dirs(model, tokens) -> torch.Tensor:
        if isinstance(tokens, str):
            tokens = model.to_single_token(tokens)
        ids = token_ids(tokens, "tokens")
        check_ids_in_vocab(ids, model.W_U.shape[1], "tokens")
        return model.W_U[:, ids.to(model.W_U.device)].movedim(0, -1)

    def stack_activation(self, activation_name: str, layer: int = -1, sublayer_type: str | None = None) -> torch.Tensor:
        """`cache[(activation_name, l, sublayer_type)]` for l < layer (-1: every layer), stacked on dim 0."""
        layer = self.n_layers if layer is None or layer == -1 else layer
        return torch.stack([self[(activation_name, l, sublayer_type)] for l in range(layer)])

    # ------------------------------------------------------------------ per-head results
    def compute_head_results(self) -> None:
        """TL's `compute_head_results`: caches `blocks.{l}.attn.hook_result` `[batch, pos, head, d_model]`
        (`z[:, :, h] @ W_O[h]`, each head's write before the sum) for every layer, from the cached `hook_z`;
        results already cached are kept. Then `cache["result", l]` answers."""
        model = self._need_model("compute_head_results")
        for layer in range(self.n_layers):
            key = f"blocks.{layer}.attn.hook_result"
            if dict.__contains__(self, key):
                continue
            z = self["z", layer]
            w_o = model.W_O[layer].to(z.device, z.dtype)
            dict.__setitem__(self, key, torch.einsum("...hd,hdm->...hm", z, w_o))

    def stack_head_results(
        self,
        layer: int = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: PosSlice = None,
        apply_ln: bool = False,
    ):
        """Each head's write into the residual stream, `z[:, :, h] @ W_O[h]` (labels `L{l}H{h}`), for the layers
        before `layer` (-1: all); `incl_remainder` adds the rest of the stream (`remainder`)."""
        model = self._need_model("stack_head_results")
        layer = self.n_layers if layer is None or layer == -1 else layer
        parts, labels = [], []
        for l in range(layer):
            z = apply_slice(self["z", l], pos_slice, -3)  # [b, p, H, dh]
            w_o = model.W_O[l].to(z.dtype)  # [H, dh, d]
            parts.append(torch.einsum("...hd,hdm->h...m", z, w_o))
            labels += [f"L{l}H{h}" for h in range(w_o.shape[0])]
        stack = torch.cat(parts) if parts else torch.zeros(0)
        if incl_remainder:
            rest = apply_slice(
                self["resid_pre", layer] if layer < self.n_layers else self["resid_post", -1], pos_slice, -2
            ) - stack.sum(0)
            stack = torch.cat([stack, rest[None]])
            labels.append("remainder")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        return_labels: bool = False,
    ):
        """Heads (`L{l}H{h}`), then MLPs (`{l}_mlp_out`, or per neuron `L{l}N{i}` with `expand_neurons`), then
        `embed` and `bias` (zeros: these models have no attention-output bias): sums to the residual stream."""
        model = self._need_model("get_full_resid_decomposition")
        layer = self._last(layer)
        heads, labels = self.stack_head_results(
            layer + (1 if mlp_input else 0) if layer < self.n_layers else layer, return_labels=True, pos_slice=pos_slice
        )
        parts = [heads]
        if expand_neurons:
            for l in range(layer):
                post = apply_slice(self["post", l], pos_slice, -2)
                w_out = model.W_out[l].to(post.dtype)
                parts.append(torch.einsum("...n,nm->n...m", post, w_out))
                labels += [f"L{l}N{i}" for i in range(w_out.shape[0])]
        else:
            mlps, mlp_labels = self.decompose_resid(
                layer, mode="mlp", incl_embeds=False, pos_slice=pos_slice, return_labels=True
            )
            parts.append(mlps)
            labels += mlp_labels
        embed = apply_slice(self["hook_embed"], pos_slice, -2)
        parts += [embed[None], torch.zeros_like(embed)[None]]
        labels += ["embed", "bias"]
        stack = torch.cat(parts)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack


def every_site_name(model) -> list[str]:
    """What a cache of "every site" holds: each canonical site but the on-demand ones (`hook_result`, TL's
    semantics: only with `model.set_use_attn_result(True)`), which cost n_heads times an attention output."""
    from .sites import ON_DEMAND_ROLES

    keep_all = model.use_attn_result
    return [n for n in model.hook_names if keep_all or model.site(n).role not in ON_DEMAND_ROLES]


def cache_names(model, names_filter: Union[None, str, Iterable[str], Callable[[str], bool]]) -> list[str]:
    """The names a `names_filter` selects, TL's way: None = every site; a string or list names sites (aliases
    allowed); a callable is asked about every name, aliases included. Unknown names raise naming the closest."""
    if names_filter is None:
        return every_site_name(model)
    if callable(names_filter):
        return [n for n in model.all_hook_names if names_filter(n)]
    if not isinstance(names_filter, (str, list, tuple, set, frozenset)) or not all(
        isinstance(n, str) for n in ([names_filter] if isinstance(names_filter, str) else names_filter)
    ):
        raise TypeError(
            f"names_filter={names_filter!r}: pass None (every site), a site name, a list of names, or a "
            "predicate fn(name) -> bool"
        )
    names = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    for n in names:
        model.site(n)
    return names
