"""What a TransformerLens user types, on HookedMDM: cfg, W_E / W_U / W_O / W_in / W_gate / W_out, tokens <-> text,
`run_with_cache` and `run_with_hooks`, aliases. A mixin, so hooked.py keeps the core.

Hook functions. mdm-lens's own API (`model.hooks`, `steer`, `cache_steps`) calls `fn(act, ctx)`, ctx the
`StepContext` (step, t, masks, `ctx.site`). `run_with_hooks` takes TL's `fn(tensor, hook)` and calls it the way
TL does, `fn(tensor, hook=h)`; a fn without a `hook` parameter (an mdm-lens `fn(act, ctx)`) gets h positionally.
`h.name` is the name the hook was given (TL reports its canonical name: the only difference), `h.layer()` its
layer, and every StepContext field reads through it (`h.step`, `h.site`, `h.masked`, `h.ctx`).
Returning None keeps the tensor, a tensor replaces it (same shape, dtype and device), in both APIs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import torch
from jaxtyping import Float, Int

from .activation_cache import ActivationCache, cache_names, owned
from .sites import get_act_name
from .validate import check_ids_in_vocab, is_int, token_ids, vocab_size

TokenInput = Union[str, Sequence[str], torch.Tensor, Sequence[int], Sequence[Sequence[int]]]
NamesFilter = Union[None, str, Iterable[str], Callable[[str], bool]]


@dataclass(frozen=True)
class MDMConfig:
    """The model's sizes under TransformerLens' names (`model.cfg`); `family` says which mdm family it is."""

    family: str
    n_layers: int
    d_model: int
    n_heads: int | None
    d_head: int | None
    d_mlp: int | None
    d_vocab: int
    n_ctx: int | None
    n_key_value_heads: int | None = None
    eps: float | None = None
    d_vocab_out: int | None = None
    act_fn: str = "silu"
    normalization_type: str = "RMS"
    final_rms: bool = True
    positional_embedding_type: str = "rotary"
    attention_dir: str = "bidirectional"  # every masked diffusion LM here (TL labels Dream "causal": it is not)
    default_prepend_bos: bool = False
    gated_mlp: bool = True


class TLHook:
    """The `hook` argument of a TL-style hook fn: `name`, `layer()`, and the step context's fields."""

    def __init__(self, name: str, ctx, layer: int | None):
        self.name, self.ctx, self._layer = name, ctx, layer

    def layer(self) -> int | None:
        return self._layer

    def __getattr__(self, attr: str):
        return getattr(self.ctx, attr)

    def __repr__(self) -> str:
        return f"TLHook(name={self.name!r}, step={self.ctx.step})"


class TLConveniences:
    """Mixed into HookedMDM (needs `model`, `spec`, `tokenizer`, `sites`, `site`, `hooks`, `input_device`)."""

    # ------------------------------------------------------------------ names
    def canonical_name(self, name: str) -> str:
        """The canonical site name of `name` (an alias resolves; an unknown name comes back unchanged)."""
        if name in self.sites:
            return name
        return self._alias_index().get(name, name)

    def _alias_index(self) -> dict[str, str]:
        idx = self.__dict__.get("_aliases")
        if idx is None:
            idx = {a: s.name for s in self.sites.values() for a in s.aliases}
            self.__dict__["_aliases"] = idx
        return idx

    @property
    def all_hook_names(self) -> list[str]:
        """Every name a hook or cache key may use: each canonical site followed by its aliases (TL's hook_dict)."""
        return [n for s in self.sites.values() for n in (s.name, *s.aliases)]

    # ------------------------------------------------------------------ sizes and weights
    @property
    def cfg(self) -> MDMConfig:
        d = self._dims()
        return MDMConfig(
            family=self.spec.name,
            n_layers=d["n_layers"],
            d_model=d["d_model"],
            n_heads=d["n_heads"],
            d_head=d["d_head"],
            d_mlp=d["d_mlp"],
            d_vocab=d["d_vocab"],
            n_ctx=d["n_ctx"],
            n_key_value_heads=d.get("n_kv_heads"),
            eps=d.get("eps"),
            d_vocab_out=d["d_vocab"],
        )

    def _dims(self) -> dict[str, Any]:
        if self.spec.dims is None:
            raise NotImplementedError(f"family {self.spec.name!r} declares no sizes (FamilySpec.dims)")
        return self.spec.dims(self.model)

    def _param(self, name: str) -> torch.Tensor:
        return self.model.get_parameter(name)

    @property
    def W_E(self) -> Float[torch.Tensor, "d_vocab d_model"]:
        return self._param(self._dims()["embed_weight"])

    @property
    def W_U(self) -> Float[torch.Tensor, "d_model d_vocab"]:
        """The unembedding as TL lays it out (`lm head weight.T`; the final norm's weight is NOT folded in)."""
        return self._param(self._dims()["unembed_weight"]).T

    @property
    def b_U(self) -> Float[torch.Tensor, " d_vocab"]:
        w = self._param(self._dims()["unembed_weight"])
        return torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)

    def _linear_weights(self, role: str) -> list[torch.Tensor]:
        from .tl_moe import check_dense

        out = []
        for layer in range(self.n_layers):
            check_dense(self, layer, role)  # an MoE layer has no single W_in: the error names the accessors
            lin = self.site(get_act_name(role, layer)).linear
            if lin is None:
                raise NotImplementedError(f"no single linear layer writes {role!r} in the {self.spec.name} family")
            out.append(self.model.get_submodule(lin).weight)
        return out

    @property
    def W_O(self) -> Float[torch.Tensor, "n_layers n_heads d_head d_model"]:
        d = self._dims()
        return torch.stack(
            [w.T.reshape(d["n_heads"], d["d_head"], d["d_model"]) for w in self._linear_weights("attn_out")]
        )

    @property
    def W_gate(self) -> Float[torch.Tensor, "n_layers d_model d_mlp"]:
        return torch.stack([w.T for w in self._linear_weights("mlp_pre")])

    @property
    def W_in(self) -> Float[torch.Tensor, "n_layers d_model d_mlp"]:
        return torch.stack([w.T for w in self._linear_weights("mlp_pre_linear")])

    @property
    def W_out(self) -> Float[torch.Tensor, "n_layers d_mlp d_model"]:
        return torch.stack([w.T for w in self._linear_weights("mlp_out")])

    # ------------------------------------------------------------------ tokens <-> text
    def _tok(self):
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: pass token ids, or load it with HookedMDM.from_pretrained")
        return self.tokenizer

    def _encode(
        self, input: TokenInput, prepend_bos: bool | None = None, padding_side: str | None = None
    ) -> tuple[Int[torch.Tensor, "batch pos"], torch.Tensor | None]:
        """ids `[batch, pos]` and an attention mask (None when nothing is padded), on the input device."""
        if isinstance(input, torch.Tensor):
            ids = token_ids(input, "input tensor")
            if ids.dim() not in (1, 2):
                raise ValueError(f"the input tensor has shape {tuple(ids.shape)}; pass token ids [batch, pos] or [pos]")
            ids = ids if ids.dim() == 2 else ids.reshape(1, -1)
            check_ids_in_vocab(ids, vocab_size(self), "input")
            return ids.to(self.input_device), None
        if not isinstance(input, (str, list, tuple)):
            raise TypeError(
                f"input is a {type(input).__name__}; pass a string, a list of strings, a list of token-id "
                "lists or an integer tensor"
            )
        rows = [input] if isinstance(input, str) or (input and is_int(input[0])) else list(input)
        if not rows:
            raise ValueError("no input given: pass a string, a list of strings or token ids")
        kinds = {"text" if isinstance(r, str) else "ids" for r in rows}
        if len(kinds) > 1 or any(not isinstance(r, (str, list, tuple)) for r in rows if not is_int(r)):
            i = next(i for i, r in enumerate(rows) if not isinstance(r, str))
            raise TypeError(
                f"input mixes strings and other items (item {i} is {rows[i]!r}); pass strings, or token-id "
                "lists, not both"
            )
        if "ids" in kinds:
            check_ids_in_vocab(token_ids(rows, "input"), vocab_size(self), "input")
        tok = self.tokenizer
        seqs = []
        for r in rows:
            ids = list(self._tok()(r, add_special_tokens=False)["input_ids"]) if isinstance(r, str) else list(r)
            if prepend_bos:
                bos = getattr(self._tok(), "bos_token_id", None)
                if bos is None:
                    raise ValueError("prepend_bos=True but the tokenizer has no bos_token_id")
                ids = [bos] + ids
            seqs.append(ids)
        width = max(len(s) for s in seqs)
        side = padding_side or getattr(tok, "padding_side", None) or "right"
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {side!r}")
        pad = getattr(tok, "pad_token_id", None) if tok is not None else None
        pad = self.config.get("pad_token_id", 0) if pad is None else pad
        ids = torch.full((len(seqs), width), int(pad), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            cols = slice(width - len(s), width) if side == "left" else slice(0, len(s))
            ids[i, cols] = torch.tensor(s, dtype=torch.long)
            mask[i, cols] = 1
        dev = self.input_device
        return ids.to(dev), (None if bool(mask.all()) else mask.to(dev))

    def to_tokens(
        self,
        input: Union[str, Sequence[str]],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        move_to_device: bool = True,
    ) -> Int[torch.Tensor, "batch pos"]:
        """Token ids `[batch, pos]` (TL: no BOS by default for these models; lists padded with the pad id on the
        tokenizer's padding side)."""
        ids, _ = self._encode(input, prepend_bos, padding_side)
        return ids if move_to_device else ids.cpu()

    def to_str_tokens(self, input: TokenInput, prepend_bos: bool | None = None) -> list[str] | list[list[str]]:
        """One string per token (a list per row for a list of strings or a 2-D batch)."""
        tok = self._tok()
        if isinstance(input, str):
            ids = self.to_tokens(input, prepend_bos)[0].tolist()
        elif isinstance(input, torch.Tensor):
            if input.dim() > 2:
                raise ValueError(f"to_str_tokens takes ids [pos] or [batch, pos]; got shape {tuple(input.shape)}")
            if input.dim() == 2 and input.shape[0] > 1:
                return [self.to_str_tokens(row) for row in input]
            ids = self._decodable(input).reshape(-1).tolist()
        elif input and all(isinstance(x, str) for x in input):
            return [self.to_str_tokens(x, prepend_bos) for x in input]
        else:
            ids = self._decodable(input).reshape(-1).tolist()
        return [tok.decode([i]) for i in ids]

    def _decodable(self, tokens: TokenInput) -> torch.Tensor:
        """Integer ids inside the vocabulary (a tokenizer decodes unknown ids to '' or '!' silently)."""
        ids = token_ids(tokens, "tokens")
        check_ids_in_vocab(ids, vocab_size(self), "tokens")
        return ids

    def to_string(self, tokens: TokenInput) -> str | list[str]:
        """ids -> text (`tokenizer.decode`; a list of texts for a 2-D batch)."""
        tok = self._tok()
        t = self._decodable(tokens)
        if t.dim() > 2:
            raise ValueError(f"to_string takes ids [pos] or [batch, pos]; got shape {tuple(t.shape)}")
        if t.dim() == 2:
            return [tok.decode(row.tolist()) for row in t]
        return tok.decode(t.reshape(-1).tolist())

    def to_single_token(self, string: str) -> int:
        ids = self._tok()(string, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{string!r} is {len(ids)} tokens {ids}, not one")
        return int(ids[0])

    # ------------------------------------------------------------------ running
    def run_with_cache(
        self,
        input: TokenInput,
        names_filter: NamesFilter = None,
        *,
        attention_mask: torch.Tensor | None = None,
        prompt_length: int | None = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
    ) -> tuple[torch.Tensor, ActivationCache]:
        """One forward (text, texts or ids); returns logits and an `ActivationCache` of the sites `names_filter`
        selects (None: every canonical site; names or aliases; or a predicate over every name). Each site is
        hooked once however many of its names were asked for; the cache answers to all of them."""
        ids, mask = self._encode(input)
        names = dict.fromkeys(self.site(n).name for n in cache_names(self, names_filter))
        cache = ActivationCache(model=self)

        def keep(act, ctx):
            act = owned(act, ctx)
            dict.__setitem__(cache, ctx.site, act if device is None else act.to(device))

        with torch.no_grad(), self.hooks({n: keep for n in names}):
            logits = self(
                ids, attention_mask=attention_mask if attention_mask is not None else mask, prompt_length=prompt_length
            )
        if remove_batch_dim:
            cache.remove_batch_dim()
        return logits, cache

    def run_with_hooks(
        self,
        input: TokenInput,
        fwd_hooks: Sequence[tuple[Union[str, Callable[[str], bool]], Callable]] = (),
        bwd_hooks: Sequence = (),
        reset_hooks_end: bool = True,
        *,
        attention_mask: torch.Tensor | None = None,
        prompt_length: int | None = None,
        return_type: str | None = "logits",
    ) -> torch.Tensor | None:
        """One forward with TL-style hooks `fwd_hooks=[(name or name-predicate, fn(tensor, hook)), ...]`; they are
        removed afterwards (always: `reset_hooks_end=False` is refused, use `with model.hooks(...)` to keep
        hooks). Backward hooks are not supported."""
        if bwd_hooks:
            raise NotImplementedError(
                "bwd_hooks are not supported; take gradients with torch.autograd on a hooked forward"
            )
        if not reset_hooks_end:
            raise ValueError("reset_hooks_end=False is not supported: hooks live in a `with model.hooks({...}):` block")
        if return_type not in ("logits", None):
            raise ValueError(f"return_type must be 'logits' or None, not {return_type!r}")
        spec: dict[str, list] = {}
        for i, entry in enumerate(fwd_hooks):
            if not (
                isinstance(entry, (tuple, list))
                and len(entry) == 2
                and callable(entry[1])
                and (isinstance(entry[0], str) or callable(entry[0]))
            ):
                raise TypeError(
                    f"fwd_hooks[{i}] is {entry!r}; each entry is a (name or name-predicate, fn(tensor, "
                    "hook)) pair, e.g. [('blocks.0.hook_resid_post', fn)]"
                )
            name, fn = entry
            names = [n for n in self.all_hook_names if name(n)] if callable(name) else [name]
            # a predicate matching a site and its aliases hooks the site once (as run_with_cache caches it once)
            by_site = {}
            for n in names:
                by_site.setdefault(self.site(n).name, n)
            for n in by_site.values():
                spec.setdefault(n, []).append(_tl_fn(fn, n, self.site(n).layer))
        ids, mask = self._encode(input)
        with self.hooks(spec):
            logits = self(
                ids, attention_mask=attention_mask if attention_mask is not None else mask, prompt_length=prompt_length
            )
        return logits if return_type == "logits" else None


def _tl_fn(fn: Callable, name: str, layer: int | None) -> Callable:
    """TL passes `hook=` by keyword; a fn without a `hook` parameter (an mdm-lens `fn(act, ctx)`) gets the same
    object positionally, and it reads like a StepContext (`.step`, `.site`, masks)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        sig = None
    keyword = sig is not None and "hook" in sig.parameters
    if sig is not None:
        try:
            sig.bind(None, hook=None) if keyword else sig.bind(None, None)
        except TypeError:
            raise TypeError(
                f"the hook fn {getattr(fn, '__name__', fn)!r}{sig} for {name!r} cannot be called as "
                "fn(tensor, hook); TL hook fns take the activation and the hook: "
                "def fn(tensor, hook): ..."
            ) from None

    def call(act, ctx):
        hook = TLHook(name, ctx, layer)
        return fn(act, hook=hook) if keyword else fn(act, hook)

    return call
