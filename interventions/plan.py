"""A Plan maps site names to ordered lists of interventions; plans add, scale, restrict, attach, save."""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence


from .restrict import Restricted, TimestepSchedule, restrict


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


class Plan:
    """`Plan({site: map or [maps]})`. At a site, interventions run in list order.

    `plan_a + plan_b` keeps every site of both; at a shared site a's interventions run before b's, so
    the sum applies a then b (T_b ∘ T_a). `strength`, `scope` and `window` return new plans.
    """

    @classmethod
    def of(cls, *extras) -> "Plan":
        """A plan of whole-model interventions (e.g. ReferenceAlignment), addable to site plans."""
        p = cls()
        p.extras = list(extras)
        return p

    def __init__(self, maps: Mapping[str, Any] | None = None, meta: dict | None = None):
        self.maps: dict[str, list] = {s: _as_list(v) for s, v in (maps or {}).items()}
        self.meta = dict(meta or {})
        self.extras: list = []          # whole-model interventions (reference alignment)

    @property
    def sites(self) -> list[str]:
        return list(self.maps)

    def __repr__(self) -> str:
        return f"Plan({ {s: [type(m).__name__ for m in ms] for s, ms in self.maps.items()} })"

    def __add__(self, other: "Plan") -> "Plan":
        out = Plan({s: list(v) for s, v in self.maps.items()}, {**self.meta, **other.meta})
        for s, ms in other.maps.items():
            out.maps.setdefault(s, []).extend(ms)
        out.extras = self.extras + other.extras
        return out

    def _map_all(self, fn: Callable) -> "Plan":
        out = Plan({s: [fn(m) for m in ms] for s, ms in self.maps.items()}, self.meta)
        out.extras = [fn(e) if hasattr(e, "strength") else e for e in self.extras]
        return out

    def strength(self, lam: float) -> "Plan":
        out = self._map_all(lambda m: m.strength(lam))
        out.meta["lambda"] = lam
        return out

    def scope(self, scope: str) -> "Plan":
        return self._map_all(lambda m: restrict(m, scope=scope))

    def window(self, steps: Sequence[int] | None = None, t_range: Sequence[float] | None = None) -> "Plan":
        return self._map_all(lambda m: restrict(m, steps=steps, t_range=t_range))

    def hook_fns(self) -> dict[str, list[Callable]]:
        """Interventions are themselves `fn(act, ctx)` callables: no wrapper frame on the hot path."""
        return {s: list(ms) for s, ms in self.maps.items()}

    def check(self, model) -> None:
        """Every site exists and every map's width equals the site's (errors name both)."""
        for s, ms in self.maps.items():
            site = model.site(s)
            for m in ms:
                d = getattr(m, "d", None)
                if d is not None and d != site.width:
                    raise ValueError(f"map of width {d} planned at site {s!r}, which carries width {site.width}; "
                                     "fit it on activations of that site")

    @contextmanager
    def attach(self, model) -> Iterator[Any]:
        """Apply through the model's hooks for the `with` block (what `model.steer(plan)` does)."""
        self.check(model)
        with ExitStack() as stack:
            for extra in self.extras:
                stack.enter_context(extra.attach(model))
            stack.enter_context(model.hooks(self.hook_fns()))
            yield model

    def save(self, path, metadata: dict | None = None, model=None) -> None:
        """One safetensors file; pass `model` to record family, id and site widths too."""
        from .io import save_plan
        save_plan(self, path, metadata, model)

    @classmethod
    def load(cls, path) -> "Plan":
        from .io import load_plan
        return load_plan(path)


def fit_incremental(model, sites: Sequence[str], source_prompts, target_prompts, estimator: str,
                    collect_fn: Callable, **opts) -> Plan:
    """ml-act's causal ('incr') fitting: site k is fitted on activations produced with the maps of
    sites < k already applied. `collect_fn(model, prompts, [site]) -> {site: [n, d]}` does the collection."""
    from .estimators import fit_map
    plan = Plan()
    for s in sites:
        with model.steer(plan):
            A = collect_fn(model, source_prompts, [s])[s]
            B = collect_fn(model, target_prompts, [s])[s]
        plan = plan + Plan({s: fit_map(estimator, A, B, site=s, **opts)})
    return plan


__all__ = ["Plan", "fit_incremental", "Restricted", "TimestepSchedule"]
