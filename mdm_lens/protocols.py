"""The typed contracts between the core and the interventions built on top of it.

The core (`HookedMDM.steer`) must tell a plan from a dict of hook functions without importing the package
that defines plans (imports run analyses -> interventions -> mdm_lens). These Protocols say structurally what
an object can do, so callers ask `isinstance(x, Intervention)` instead of probing with `hasattr` or switching
on type names. They carry no behaviour and import nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ContextManager, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: keeps this module import-light
    import torch

    from .context import StepContext


@runtime_checkable
class Intervention(Protocol):
    """Acts at one site: `fn(act, ctx)` returns the replacement activation (None leaves it unchanged).

    `d` is the width of the site it was fitted for (None: any width), checked against the site before a
    plan is attached. `strength(lam)` returns the λ-interpolated copy (λ = 0: no effect, λ = 1: as fitted).
    """

    @property
    def d(self) -> int | None: ...

    def __call__(self, act: "torch.Tensor", ctx: "StepContext | None") -> "torch.Tensor | None": ...

    def strength(self, lam: float) -> "Intervention": ...


@runtime_checkable
class Foldable(Intervention, Protocol):
    """An intervention that is the same affine map T(a) = ω a + β at every position and step, so it can be
    written into the weights of the linear layer that writes its site (`interventions.fold`)."""

    def linear(self, x: "torch.Tensor") -> "torch.Tensor": ...  # ω x, without β

    def then(self, second: "Foldable") -> "Foldable": ...  # apply self, then second


@runtime_checkable
class ModelIntervention(Protocol):
    """Needs the whole model rather than one site (a plan, reference alignment: extra batch rows, several
    sites at once). `attach(model)` is a context manager that installs it for the `with` block."""

    def attach(self, model: Any) -> ContextManager[Any]: ...

    def strength(self, lam: float) -> "ModelIntervention": ...


__all__ = ["Intervention", "Foldable", "ModelIntervention"]
