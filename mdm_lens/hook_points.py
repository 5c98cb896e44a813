"""Identity modules that give a name to tensors that are no module's output (e.g. resid_mid).

Mechanism, not vocabulary: a `HookPoint` is where a torch hook can sit; which tensor it carries (its role,
its canonical name) is the site table's business (`mdm_lens.sites`), and attaching user functions is
`mdm_lens.hooking`'s."""

from __future__ import annotations

import torch
from torch import nn


class HookPoint(nn.Module):
    """Returns its input; exists so torch forward hooks can read or replace the tensor.

    It has no parameters, so it never changes a checkpoint's state-dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def hooked(self) -> bool:
        """Whether a hook is attached here now: code that must materialise a tensor only for a hook (the eager
        attention path for `hook_pattern`, ...) asks this, so an unhooked forward keeps its fast path."""
        return bool(self._forward_hooks or self._forward_pre_hooks)
