"""Past keys/values for block-cached sampling (Fast-dLLM's prefix cache and dual cache).

A cached forward computes only some canvas columns and reads the keys/values of the others from
`past_key_values`: one `(keys, values)` pair per layer, each `[batch, kv_heads, columns, head_dim]`, keys
stored *after* rotary embedding (Fast-dLLM stores them before and rotates the whole key set again on
every call; rotary is element-wise, so both give the same numbers and ours skips the re-rotation).

Two ways to combine the computed columns with the cache, as in Fast-dLLM:

* prefix: the cache holds columns `0 .. past` and the forward computes the next `p` columns; the layer
  attends over their concatenation;
* dual (`replace_position`, a `[batch, columns]` bool mask with one contiguous run of `p` Trues, the same
  in every row): the cache holds every column and the run is overwritten **in place** with the freshly
  computed keys/values before attending, so the suffix after the block stays cached too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float

KV = tuple[Float[torch.Tensor, "b kv n hd"], Float[torch.Tensor, "b kv n hd"]]


@dataclass
class CachedOutput:
    """What a forward returns when `use_cache=True`: the logits of the computed columns and the cache."""

    logits: torch.Tensor
    past_key_values: list[KV]


def replaced_span(replace_position: Bool[torch.Tensor, "b n"], computed: int, cached: int) -> tuple[int, int]:
    """[start, stop) of the one contiguous run of True columns; errors name what is wrong."""
    if replace_position.dim() != 2 or replace_position.shape[1] != cached:
        raise ValueError(
            f"replace_position must be a [batch, {cached}] bool mask over the cached columns, got "
            f"shape {tuple(replace_position.shape)}"
        )
    row = replace_position[0].to(torch.bool)
    if replace_position.shape[0] > 1 and not bool((replace_position.to(torch.bool) == row).all()):
        raise ValueError("replace_position must mark the same columns in every row (one block for the batch)")
    cols = row.nonzero().flatten().tolist()
    if not cols or cols[-1] - cols[0] + 1 != len(cols) or len(cols) != computed:
        raise ValueError(
            f"replace_position must mark one contiguous run of exactly {computed} columns (the "
            f"input length); it marks {len(cols)} column(s): {cols[:8]}{'...' if len(cols) > 8 else ''}"
        )
    return cols[0], cols[-1] + 1


class LayerKV:
    """One layer's side of a cached forward: merges the computed keys/values with the past ones."""

    __slots__ = ("past", "span", "present")

    def __init__(self, past: KV | None, span: tuple[int, int] | None):
        self.past = past
        self.span = span  # dual cache: the columns to overwrite in place
        self.present: KV | None = None

    def merge(self, k: torch.Tensor, v: torch.Tensor) -> KV:
        """-> the keys/values to attend over (also kept as `present`)."""
        if self.past is None:
            out = (k, v)
        elif self.span is None:
            out = (torch.cat((self.past[0], k), dim=-2), torch.cat((self.past[1], v), dim=-2))
        else:
            start, stop = self.span
            self.past[0][:, :, start:stop] = k
            self.past[1][:, :, start:stop] = v
            out = self.past
        self.present = out
        return out


def layer_caches(
    past_key_values: list[KV] | None, n_layers: int, computed: int, replace_position: torch.Tensor | None
) -> tuple[list[LayerKV], int, int]:
    """-> (one LayerKV per layer, first computed column, number of key columns).

    The first computed column is where rotary positions of this forward start: the cache length (prefix)
    or the start of the replaced run (dual)."""
    if past_key_values is None:
        if replace_position is not None:
            raise ValueError("replace_position needs past_key_values (the cache whose columns it replaces)")
        return [LayerKV(None, None) for _ in range(n_layers)], 0, computed
    if len(past_key_values) != n_layers:
        raise ValueError(f"past_key_values has {len(past_key_values)} layers; the model has {n_layers}")
    cached = past_key_values[0][0].shape[-2]
    if replace_position is None:
        return [LayerKV(tuple(p), None) for p in past_key_values], cached, cached + computed
    span = replaced_span(replace_position, computed, cached)
    return [LayerKV(tuple(p), span) for p in past_key_values], span[0], cached
