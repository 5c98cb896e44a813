"""A Plan maps site names to ordered lists of interventions; plans add, scale, restrict, attach, save."""

from __future__ import annotations

import warnings
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
                raise TypeError(
                    f"Plan.of takes whole-model interventions (attach(model) and strength(lam)); got a "
                    f"{type(e).__name__}. Put a site intervention in Plan({{site: intervention}}) instead"
                )
        p = cls()
        p.extras = list(extras)
        return p

    def __init__(self, maps: Mapping[str, Any] | None = None, meta: dict | None = None):
        self.maps: dict[str, list[Intervention]] = {s: _as_list(v) for s, v in (maps or {}).items()}
        for s, ms in self.maps.items():
            for m in ms:
                if not isinstance(m, Intervention):
                    raise TypeError(
                        f"the intervention planned at site {s!r} is a {type(m).__name__}, which lacks "
                        "__call__(act, ctx), d or strength(lam) (mdm_lens.protocols.Intervention); "
                        "use an AffineMap or an estimator's fit, or pass plain hook functions to "
                        "model.hooks({site: fn}) instead"
                    )
        self.meta = dict(meta or {})
        self.extras: list[ModelIntervention] = []  # whole-model interventions (reference alignment)

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
            raise ValueError(
                f"{what} restricts site interventions only, and this plan also holds whole-model "
                f"interventions ({names}) that choose their own positions; restrict the site plan "
                "first, then add them: site_plan.scope(...) + Plan.of(...)"
            )

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
        """The plan is bound to its model: a plan recorded for another family or other site widths is refused
        (naming both), another model id of the same family and widths warns once (LLaDA -> LLaDA 1.5 is
        legitimate); every site exists and every map's width equals the site's."""
        check_binding(self.meta.get("model") or {}, model)
        for s, ms in self.maps.items():
            site = model.site(s)
            for m in ms:
                if m.d is not None and m.d != site.width:
                    raise ValueError(
                        f"map of width {m.d} planned at site {s!r}, which carries width {site.width}; "
                        "fit it on activations of that site"
                    )

    def step_windows(self) -> dict[str, tuple[int, int]]:
        """The step window [start, stop) of every restricted intervention, by site."""
        return {
            s: m.steps for s, ms in self.maps.items() for m in ms if isinstance(m, Restricted) and m.steps is not None
        }

    @contextmanager
    def attach(self, model) -> Iterator[Any]:
        """Apply through the model's hooks for the `with` block (what `model.steer(plan)` does)."""
        self.check(model)
        fns = self.hook_fns()
        windows = self.step_windows()
        if windows:  # one extra call per forward, only for windowed plans
            site = next(iter(windows))
            fns[site] = [_window_warner(windows)] + fns[site]
        with ExitStack() as stack:
            for extra in self.extras:
                stack.enter_context(extra.attach(model))
            stack.enter_context(model.hooks(fns))
            yield model

    def save(self, path, metadata: dict | None = None, model=None) -> None:
        """One safetensors file; pass `model` to record family, id and site widths too."""
        if self.extras:
            raise TypeError(
                "plans with whole-model interventions (reference alignment) cannot be saved: they hold "
                "a reference sequence; save the reference ids and re-create it"
            )
        write_plan_file(path, self.maps, self.meta, metadata, model)

    @classmethod
    def load(cls, path) -> "Plan":
        """A plan saved by `Plan.save`; its meta carries the file's metadata and the recorded model."""
        return cls(*read_plan_file(path))


_warned_ids: set[tuple[str, str]] = set()


def _describe(family, name) -> str:
    return f"a {family!r} model ({name or 'unnamed: built by from_config'})"


def check_binding(recorded: Mapping[str, Any], model) -> None:
    """Compare the model a plan file recorded (`Plan.save(..., model=)`) with `model`."""
    if not recorded:
        return
    fam, name = recorded.get("family"), recorded.get("name_or_path")
    here = _describe(model.spec.name, model.name_or_path)
    if fam is not None and fam != model.spec.name:
        raise ValueError(
            f"plan refused: it was fitted on {_describe(fam, name)}, and this is {here}; a plan "
            "applies only to the family it was fitted on. Fit the plan on this model"
        )
    wrong = {}
    for s, w in (recorded.get("site_widths") or {}).items():
        try:
            width = model.site(s).width
        except KeyError:  # an unknown site is refused by the map check, naming close names
            continue
        if width != w:
            wrong[s] = (w, width)
    if wrong:
        shown = ", ".join(f"{s}: plan {w}, model {m}" for s, (w, m) in list(wrong.items())[:4])
        raise ValueError(
            f"plan refused: it was fitted on {_describe(fam, name)} whose site widths differ from this "
            f"{here} ({shown}). Fit the plan on this model"
        )
    if name is not None and name != model.name_or_path and (name, str(model.name_or_path)) not in _warned_ids:
        _warned_ids.add((name, str(model.name_or_path)))
        warnings.warn(
            f"this plan was fitted on {name!r}, and is applied to {model.name_or_path!r} of the same "
            f"family ({fam}) and site widths; fine for a sibling checkpoint (e.g. LLaDA -> LLaDA 1.5), "
            "but check it transfers (this warning is shown once per pair)",
            stacklevel=3,
        )


def _window_warner(windows: dict[str, tuple[int, int]]):
    """A hook that, at the first step of a generation, warns (once per num_steps) when a step window reaches
    past the generation's last step: the plan was windowed for another number of steps."""
    warned: set[int] = set()

    def warn_late_windows(act, ctx):
        if ctx.step == 0 and ctx.num_steps is not None and ctx.num_steps not in warned:
            late = {s: w for s, w in windows.items() if w[1] > ctx.num_steps}
            if late:
                warned.add(ctx.num_steps)
                shown = ", ".join(f"{s}: steps {list(w)}" for s, w in list(late.items())[:4])
                warnings.warn(
                    f"step window(s) reach beyond this generation's num_steps={ctx.num_steps} (steps "
                    f"0..{ctx.num_steps - 1}): {shown}; the part past the last step never acts. "
                    "Re-window the plan (plan.window(steps=...)) for this number of steps",
                    stacklevel=2,
                )
        return None

    return warn_late_windows


def fit_incremental(
    model,
    sites: Sequence[str],
    source_prompts,
    target_prompts,
    estimator: str,
    *,
    collect_opts: dict | None = None,
    **opts,
) -> Plan:
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
