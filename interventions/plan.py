"""A Plan maps site names to ordered lists of interventions; plans add, scale, restrict, attach, save."""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

from mdm_lens.protocols import Intervention, ModelIntervention

from .io import read_plan_file, write_plan_file
from .restrict import Restricted, TimestepSchedule, restrict


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


class Plan:
    """`Plan({site: map or [maps]})`. At a site, interventions run in list order.

    `plan_a + plan_b` keeps every site of both; at a shared site a's interventions run before b's, so
    the sum applies a then b (T_b ∘ T_a). `strength`, `scope` and `window` return new plans.
    """

    @classmethod
    def of(cls, *extras: ModelIntervention) -> "Plan":
        """A plan of whole-model interventions (e.g. ReferenceAlignment), addable to site plans."""
        for e in extras:
            if not isinstance(e, ModelIntervention):
                raise TypeError(f"Plan.of takes whole-model interventions (attach(model) and strength(lam)); got a "
                                f"{type(e).__name__}. Put a site intervention in Plan({{site: intervention}}) instead")
        p = cls()
        p.extras = list(extras)
        return p

    def __init__(self, maps: Mapping[str, Any] | None = None, meta: dict | None = None):
        self.maps: dict[str, list[Intervention]] = {s: _as_list(v) for s, v in (maps or {}).items()}
        for s, ms in self.maps.items():
            for m in ms:
                if not isinstance(m, Intervention):
                    raise TypeError(f"the intervention planned at site {s!r} is a {type(m).__name__}, which lacks "
                                    "__call__(act, ctx), d or strength(lam) (mdm_lens.protocols.Intervention); "
                                    "use an AffineMap or an estimator's fit, or pass plain hook functions to "
                                    "model.hooks({site: fn}) instead")
        self.meta = dict(meta or {})
        self.extras: list[ModelIntervention] = []       # whole-model interventions (reference alignment)

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

    def _map_sites(self, fn: Callable[[Intervention], Intervention], extras: list[ModelIntervention]) -> "Plan":
        out = Plan({s: [fn(m) for m in ms] for s, ms in self.maps.items()}, self.meta)
        out.extras = extras
        return out

    def _refuse_extras(self, what: str) -> None:
        if self.extras:
            names = ", ".join(type(e).__name__ for e in self.extras)
            raise ValueError(f"{what} restricts site interventions only, and this plan also holds whole-model "
                             f"interventions ({names}) that choose their own positions; restrict the site plan "
                             "first, then add them: site_plan.scope(...) + Plan.of(...)")

    def strength(self, lam: float) -> "Plan":
        out = self._map_sites(lambda m: m.strength(lam), [e.strength(lam) for e in self.extras])
        out.meta["lambda"] = lam
        return out

    def scope(self, scope: str) -> "Plan":
        self._refuse_extras(f"scope({scope!r})")
        return self._map_sites(lambda m: restrict(m, scope=scope), [])

    def window(self, steps: Sequence[int] | None = None, t_range: Sequence[float] | None = None) -> "Plan":
        self._refuse_extras("window(...)")
        return self._map_sites(lambda m: restrict(m, steps=steps, t_range=t_range), [])

    def hook_fns(self) -> dict[str, list[Callable]]:
        """Interventions are themselves `fn(act, ctx)` callables: no wrapper frame on the hot path."""
        return {s: list(ms) for s, ms in self.maps.items()}

    def check(self, model) -> None:
        """Every site exists and every map's width equals the site's (errors name both)."""
        for s, ms in self.maps.items():
            site = model.site(s)
            for m in ms:
                if m.d is not None and m.d != site.width:
                    raise ValueError(f"map of width {m.d} planned at site {s!r}, which carries width {site.width}; "
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
        if self.extras:
            raise TypeError("plans with whole-model interventions (reference alignment) cannot be saved: they hold "
                            "a reference sequence; save the reference ids and re-create it")
        write_plan_file(path, self.maps, self.meta, metadata, model)

    @classmethod
    def load(cls, path) -> "Plan":
        """A plan saved by `Plan.save`; its meta carries the file's metadata and the recorded model."""
        return cls(*read_plan_file(path))


def fit_incremental(model, sites: Sequence[str], source_prompts, target_prompts, estimator: str, *,
                    collect_opts: dict | None = None, **opts) -> Plan:
    """ml-act's causal ('incr') fitting: site k is fitted on activations produced with the maps of
    sites < k already applied. Collection is `mdm_lens.collect.collect(..., **collect_opts)`."""
    from mdm_lens.collect import collect
    from .estimators import fit_map
    copts = {"progress": False, **(collect_opts or {})}
    plan = Plan()
    for s in sites:
        with model.steer(plan):
            A = collect(model, source_prompts, [s], **copts)[s]
            B = collect(model, target_prompts, [s], **copts)[s]
        plan = plan + Plan({s: fit_map(estimator, A, B, site=s, **opts)})
    return plan


__all__ = ["Plan", "fit_incremental", "Restricted", "TimestepSchedule"]
