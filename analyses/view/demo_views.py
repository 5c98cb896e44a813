"""The demo's viewer pages: one per section, each an unsteered vs steered pair on one of the section's own test
prompts, with the plan the section chose rebuilt from its recorded settings.

* `view_refusal.html`: the refusal direction (harmful - harmless prompt means, the study's calibration prompts)
  ablated at the sweep's best cell, on the first harmful test request the unsteered model refuses and the ablated
  one answers (the first one when none flips);
* `view_ifeval.html`: the Linear-ACT plan of the section's first constraint at its chosen lambda, on that
  constraint's first test prompt;
* `view_ilrr.html`: ILRR (reference alignment at the chosen strength) on the first test review request. ILRR acts
  through extra batch rows inside the sampler, so the page's lens and attention for the steered run read the
  steered canvas through the plain model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from analyses.records import Section

from .render import render


def _refusal_view(model, data: dict, seed: int, out: str) -> tuple[str, str]:
    from analyses.refusal import RefusalScorer
    from analyses.studies.organism.behaviours import refusal_prompts
    from interventions import Plan, fit_map
    from mdm_lens.collect import collect_contrastive
    from mdm_lens.sites import get_act_name

    cfg, best = data["config"], data["best"]
    site = get_act_name(best["role"], best["layer"])
    calib = (
        refusal_prompts(False, cfg["n_calib"], "train", cfg["seed"]),
        refusal_prompts(True, cfg["n_calib"], "train", cfg["seed"]),
    )
    src, tgt = collect_contrastive(model, *calib, [site], pooling="mean", scope="prompt", progress=False)
    plan = Plan({site: fit_map("directional_ablation", src[site], tgt[site], site=site)})
    plan = plan if best["scope"] == "all" else plan.scope(best["scope"])
    prompts = refusal_prompts(True, cfg["n_test"], "test", cfg["seed"])[:4]
    scorer, sampler = RefusalScorer(), cfg.get("sampler") or {}
    pick = prompts[0]
    for p in prompts:  # cheap: two plain generations per candidate, no trace
        a = model.generate([p], seed=cfg["seed"], **sampler).texts[0]
        b = model.generate([p], plan=plan, seed=cfg["seed"], **sampler).texts[0]
        if scorer.is_refusal(a) and not scorer.is_refusal(b):
            pick = p
            break
    why = f"directional ablation at layer {best['layer']} {best['role']}, scope {best['scope']}"
    view = render(
        model, [pick], plan=plan, seed=cfg["seed"], steered_label="ablated", title=f"Refusal ablation: {why}", **sampler
    )
    return view.save(os.path.join(out, "view_refusal.html")), why


def _ifeval_view(model, data: dict, seed: int, out: str) -> tuple[str, str]:
    from analyses.studies.organism import corpus_for

    from ..studies.experiment import ExperimentConfig, PlanCache, default_sites
    from ..studies.tasks import organism_tasks

    sizes, sampler = data["sizes"], data["sampler"]
    kind = data["tasks"][0] if isinstance(data["tasks"][0], str) else data["tasks"][0]["name"]
    tasks = organism_tasks([kind], sizes["n_calib"], sizes["n_val"], sizes["n_test"], seed, corpus_for(model.config))
    cfg = ExperimentConfig(
        lambdas=tuple(sizes["lambdas"]),
        n_calib=sizes["n_calib"],
        n_val=sizes["n_val"],
        n_test=sizes["n_test"],
        seed=seed,
        sampler=sampler,
        batch_size=32,
        methods=("none", "linear_act"),
    )  # damage settings do not enter the fit
    lam = next((r["lambda"] for r in data["per_task"] if r["method"] == "linear_act" and r["task"] == kind), None)
    lam = 1.0 if lam is None else lam
    plan = PlanCache(model, tasks, cfg, data["sites"], default_sites(model)[1]).plan(kind, "linear_act", lam)
    why = f"Linear-ACT for {kind} at λ={lam}"
    view = render(
        model,
        [tasks[0].test[0].prompt],
        plan=plan,
        seed=seed,
        steered_label="Linear-ACT",
        title=f"IFEval steering: {why}",
        **sampler,
    )
    return view.save(os.path.join(out, "view_ifeval.html")), why


def _ilrr_view(model, data: dict, seed: int, out: str) -> tuple[str, str]:
    from analyses.studies.organism.behaviours import sentiment_prompts
    from interventions import Plan, ReferenceAlignment

    cfg, s = data["config"], data["chosen"]["s"]
    ref_ids = model.tokenizer(cfg["reference"], add_special_tokens=False)["input_ids"]
    plan = Plan.of(ReferenceAlignment(ref_ids, cfg["sites"], s=s, pooling=cfg["pooling"], profile=cfg["profile"]))
    prompt = sentiment_prompts(None, cfg["n_test"], "test", cfg["seed"])[0]
    why = f"ILRR at strength {s}, reference {cfg['reference']!r}"
    view = render(
        model,
        [prompt],
        plan=plan,
        seed=cfg["seed"],
        steered_label="ILRR",
        title=f"ILRR: {why}",
        **(cfg.get("sampler") or {}),
    )
    return view.save(os.path.join(out, "view_ilrr.html")), why


BUILDERS = {"refusal": _refusal_view, "ifeval": _ifeval_view, "ilrr": _ilrr_view}


def write_demo_views(model, out: str, sections: Sequence[Section], seed: int = 0) -> Section:
    """One viewer page per demo section it knows (refusal, IFEval, ILRR), written into `out`; returns the report
    section that links them."""
    intro = (
        "Open in a browser (one self-contained file each; step slider, per-position predictions, logit lens, "
        "attention, unsteered vs steered with damage):"
    )
    lines = ["## Trace viewers", "", intro, ""]
    files = []
    for sec in sections:
        if sec.key not in BUILDERS:
            continue
        path, why = BUILDERS[sec.key](model, sec.data, seed, out)
        files.append(os.path.basename(path))
        lines.append(f"- [`{files[-1]}`]({files[-1]}): {sec.key}, {why}")
    return Section("views", lines + [""], {"files": files}, [])
