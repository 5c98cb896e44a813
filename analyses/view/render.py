"""`render(model, prompts, plan=...)`: generate, extract, pack, and hand back a `View` that shows itself in Jupyter
and saves to one self-contained HTML file."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .extract import FeatureSpec, Trace, trace_generation
from .pack import document, page


@dataclass
class View:
    """The viewer page: `html` is the whole document; `doc` the data it carries; `traces` the generations."""

    html: str
    doc: dict[str, Any]
    traces: list[list[Trace]]

    def _repr_html_(self) -> str:
        """The same page in an isolated frame, so several views in one notebook never share ids or styles."""
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" style="width:100%;height:900px;border:0" '
            f'sandbox="allow-scripts"></iframe>'
        )

    def save(self, path: str | os.PathLike) -> str:
        """Write the page atomically (mdm_lens.safefile); returns the path."""
        from mdm_lens.safefile import write_text_atomic

        path = os.fspath(path)
        if not path.endswith((".html", ".htm")):
            raise ValueError(f"view path {path!r} must end in .html (it is one self-contained HTML page)")
        write_text_atomic(self.html, path)
        return path

    @property
    def size_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


def _attach_damage(model, group: list[Trace], mc_num: int, seed: int, chat: bool) -> None:
    from analyses.damage import damage

    recs = damage(
        model,
        [t.prompt for t in group],
        [t.text for t in group],
        mc_num=mc_num,
        seed=seed,
        batch_size=min(16, mc_num),
        chat=chat,
    )
    for t, rec in zip(group, recs):
        t.damage = rec


def render(
    model,
    prompts: str | Sequence[str],
    *,
    plan=None,
    title: str | None = None,
    top_k: int = 5,
    seed: int = 0,
    chat: bool = True,
    detail_steps: Sequence[int] | None = None,
    lens_layers: Sequence[int] | None = None,
    attn_layers: Sequence[int] | None = None,
    attn_k: int = 8,
    features: FeatureSpec | None = None,
    damage_mc: int | None = 64,
    steered_label: str = "steered",
    progress: bool = False,
    **sampler_kwargs,
) -> View:
    """One viewer for one or more prompts: each generated once unsteered and, with `plan`, once more with the plan
    attached (same seed, same settings), side by side with the differing positions marked and the damage
    (`analyses.damage`: NLL under the unsteered model with `damage_mc` Monte-Carlo samples, degeneracy flags)
    beside each; `damage_mc=None` skips it. `model` must have no plan attached (it is the unsteered reference).
    Options of the traces as in `trace_generation`; sampler options as in `model.generate`."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts: one str or a non-empty list of str")
    if damage_mc is not None and (not isinstance(damage_mc, int) or damage_mc < 1):
        raise ValueError(f"damage_mc={damage_mc!r}: a positive number of Monte-Carlo samples, or None to skip damage")
    opts = dict(
        top_k=top_k,
        seed=seed,
        chat=chat,
        detail_steps=detail_steps,
        lens_layers=lens_layers,
        attn_layers=attn_layers,
        attn_k=attn_k,
        features=features,
        **sampler_kwargs,
    )
    groups: list[list[Trace]] = []
    it = prompts
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(prompts, desc="viewer", unit="prompt", leave=False)
    for p in it:
        group = [trace_generation(model, p, label="unsteered", **opts)]
        if plan is not None:
            group.append(trace_generation(model, p, plan=plan, label=steered_label, **opts))
            if damage_mc is not None:
                _attach_damage(model, group, damage_mc, seed, chat)
        groups.append(group)
    name = str(model.name_or_path or model.spec.name)
    title = title or f"mdm-lens trace viewer \u00b7 {name}" + (f" \u00b7 unsteered vs {steered_label}" if plan else "")
    doc = document(model, groups, title)
    return View(html=page(doc), doc=doc, traces=groups)
