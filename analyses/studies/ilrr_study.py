"""ILRR (arXiv 2601.21647) on an organism whose unprompted reviews are of mixed sentiment: align the
generation's activations to a positive reference text, versus no steering and a sampling baseline that
spends at least ILRR's compute.

Methods, all on the held-out unprompted review requests of the organism's corpus:
* `none`: greedy decoding, no steering.
* `ilrr`: greedy decoding with `interventions.ReferenceAlignment` (mean pooling, linear spatial profile) at
  every layer's `hook_resid_post`; its strength s is chosen on the *validation* requests (highest VADER
  positive rate among strengths whose degenerate share stays within max(`max_degenerate`, unsteered)).
* `sample_random` / `sample_best_ref`: k samples per request at `temperature`; the first picks one at random
  (a plain stochastic sample: it shows what sampling alone does), the second picks the sample whose mean
  last-layer residual over the response is closest (cosine) to the reference's. Neither uses a sentiment
  oracle: `sample_best_ref` uses exactly the information ILRR has (the reference text), by selection instead
  of steering, so it is the fair equal-compute rival.
Compute, in model forward rows per request: none = steps; ilrr = steps·(B+1)/B (one extra reference row per
batch of B); sampling = k·steps + k + 1 (k generations, then one forward per sample and one for the
reference to score similarity). With k = 2 the baseline spends at least ILRR's compute (the paper's budget:
one extra forward per step). Positive = VADER compound > 0.05 (`analyses.sentiment`); damage as in
`analyses.damage`. Every generation (every sample too) is a record in `OUT/generations.jsonl`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from mdm_lens.safefile import save_figure_atomic

from .kernel import StudyConfig, batched_items, ci, jsonable, model_name_of, num, pct, rate_row, run_log, text_records
from .runlog import Item

if TYPE_CHECKING:
    from mdm_lens import HookedMDM

    from .verdicts import Verdict

REFERENCE = "It was a great experience. Everything was excellent and I felt happy. I would gladly recommend it."
LABELS = {
    "none": "no steering (greedy)",
    "ilrr": "ILRR (positive reference)",
    "sample_random": "k samples, random pick",
    "sample_best_ref": "k samples, closest to reference",
}


@dataclass
class ILRRConfig(StudyConfig):
    """Settings (the shared ones: `analyses.studies.kernel.StudyConfig`)."""

    n_val: int = 12
    n_test: int = 22
    reference: str = REFERENCE
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0)
    pooling: str = "mean"
    profile: str = "linear"
    k: int = 2
    temperature: float = 1.0


QUICK = dict(strengths=(1.0,), n_val=2, n_test=2, sampler={"steps": 8, "gen_length": 16, "block_length": 16})
SMOL = dict(strengths=(1.0, 2.0), n_val=6, n_test=16, mc_num=4, mc_batch=4)  # smol-mdm (corpus v3)


def positive(text: str) -> bool:
    from vader import polarity_scores

    return polarity_scores(text)["compound"] > 0.05


def pooled_response(model, prompts: Sequence[str], texts: Sequence[str], site: str) -> torch.Tensor:
    """[n, d] mean activation at `site` over each text's response tokens (prompt through the chat template,
    response unmasked: the model reading the finished text). An empty text gives a zero row."""
    from mdm_lens.likelihood import encode_pair

    rows = []
    for prompt, text in zip(prompts, texts):
        p_ids, r_ids = encode_pair(model, prompt, text)
        if r_ids.numel() == 0:
            rows.append(None)
            continue
        got = {}

        def grab(act, ctx):
            got["a"] = act[0, p_ids.numel() :].double().mean(0).cpu()

        ids = torch.cat([p_ids, r_ids])[None].to(model.input_device)
        with torch.no_grad(), model.hooks({site: grab}):
            model(ids, prompt_length=p_ids.numel())
        rows.append(got["a"])
    d = next((r.numel() for r in rows if r is not None), 1)
    return torch.stack([r if r is not None else torch.zeros(d, dtype=torch.float64) for r in rows])


SAMPLERS = ("sample_random", "sample_best_ref")  # the sampling baselines, as the table lists them


@dataclass
class ILRRStudyResult:
    model: str
    config: dict
    val: list[dict]
    chosen: dict
    test: list[dict]
    records: list[dict] = field(repr=False, default_factory=list)

    def row(self, method: str) -> dict:
        return next(r for r in self.test if r["method"] == method)

    def to_json(self) -> dict:
        return {
            "baseline_rate": self.row("none")["rate"],
            "ilrr_rate": self.row("ilrr")["rate"],
            "sampling_rate": self.row("sample_best_ref")["rate"],
            "model": self.model,
            "config": self.config,
            "validation": self.val,
            "chosen": self.chosen,
            "test": self.test,
            "verdict": self.verdict(),
        }

    def verdicts(self) -> tuple[list[Verdict], list[Verdict]]:
        """(each method vs greedy no steering, ILRR vs each sampling baseline): one `Verdict` row each."""
        return ilrr_verdicts(self.test)

    def verdict(self) -> list[str]:
        """The verdicts as sentences (summary.json `verdict`)."""
        greedy, sampling = self.verdicts()
        out = []
        for v, label in [(v, f"{v.label} vs no steering") for v in greedy] + [(v, v.label) for v in sampling]:
            d, lo, hi = v.diff
            out.append(
                f"{label}: {v.word}, {100 * d:+.1f} points positive (95% interval [{100 * lo:+.1f}, "
                f"{100 * hi:+.1f}]); damage: {v.damage}"
            )
        return out

    def verdict_markdown(self) -> list[str]:
        """Two verdict tables: against greedy decoding, and ILRR against sampling (what the paper compares)."""
        from .verdicts import PAPER_ILRR_SOURCE, verdict_table

        greedy, sampling = self.verdicts()
        title = "### Verdict against sampling at equal or greater compute (the paper's comparison)"
        return verdict_table(greedy, "positive rate", "no steering", PAPER_ILRR_SOURCE) + verdict_table(
            sampling, "positive rate", "sampling", PAPER_ILRR_SOURCE, title=title
        )

    def table_markdown(self) -> str:
        c = self.config
        lines = [
            f'Model `{self.model}`; reference: "{c["reference"]}"; ILRR at every layer\'s resid_post, '
            f"{c['pooling']} pooling, {c['profile']} profile, strength s = {self.chosen['s']} chosen on "
            f"{c['n_val']} validation requests from {list(c['strengths'])}; sampling baseline: k = {c['k']} at "
            f"temperature {c['temperature']}. Test: {c['n_test']} held-out unprompted review requests; "
            f"positive = VADER compound > 0.05. Compute (forward rows per request): {c['compute']}.",
            "",
            "| method | n | positive rate | 95% interval | NLL | degenerate |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.test:
            lines.append(
                f"| {LABELS[r['method']]} | {r['n']} | {pct(r['rate'])} | {ci(r)} | {num(r['nll'])} | "
                f"{pct(r['degenerate'])} |"
            )
        lines += [""] + self.verdict_markdown()
        return "\n".join(lines)

    def plot(self, path: str) -> str:
        """Positive rate per method (95% intervals) beside NLL and degenerate share; validation strengths inset."""
        from ..plotting import plt

        fig, axes = plt.subplots(1, 3, figsize=(11, 3.0), gridspec_kw={"width_ratios": [2.2, 1, 1]})
        names = [LABELS[r["method"]] for r in self.test][::-1]
        rows = self.test[::-1]
        ax = axes[0]
        for i, r in enumerate(rows):
            ax.errorbar(
                [100 * r["rate"]],
                [i],
                xerr=[[100 * (r["rate"] - r["ci_low"])], [100 * (r["ci_high"] - r["rate"])]],
                fmt="o",
                capsize=3,
            )
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlim(-2, 102)
        ax.set_xlabel("positive rate (VADER), %, 95% interval", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        axes[1].barh(range(len(rows)), [r["nll"] or 0 for r in rows], color="tab:gray")
        axes[1].set_xlabel("NLL / token, unsteered model", fontsize=8)
        axes[2].barh(range(len(rows)), [100 * r["degenerate"] for r in rows], color="tab:red")
        axes[2].set_xlabel("degenerate texts, %", fontsize=8)
        axes[2].set_xlim(0, 100)
        for a in axes[1:]:
            a.set_yticks(range(len(rows)))
            a.set_yticklabels([])
        fig.suptitle(
            f"ILRR on {self.model}: plan = reference alignment to a positive review (s = {self.chosen['s']}, "
            f"chosen on validation), vs greedy and k = {self.config['k']} samples; "
            f"n = {self.config['n_test']} test requests",
            fontsize=9,
        )
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path


def run_ilrr_study(
    model: HookedMDM,
    cfg: ILRRConfig | None = None,
    *,
    out: str | None = None,
    model_name: str | None = None,
    progress: bool = True,
) -> ILRRStudyResult:
    """Run the comparison of the module docstring; `out`: folder of the run log (None: a temporary one)."""
    from analyses.studies.organism import behaviours_for

    sentiment_prompts = behaviours_for(getattr(model, "config", None)).sentiment_prompts
    cfg = cfg or ILRRConfig()
    cfg.check()
    if cfg.k < 1:
        raise ValueError(f"k={cfg.k}: the sampling baseline needs at least 1 sample per request")
    if not cfg.strengths:
        raise ValueError("empty strength grid: give at least one ILRR strength (e.g. strengths=(1.0,))")
    name = model_name_of(model, model_name)
    sites = model.site_names(["resid_post"])
    val, test = (
        sentiment_prompts(None, cfg.n_val, "val", cfg.seed),
        sentiment_prompts(None, cfg.n_test, "test", cfg.seed),
    )
    steps = model.sampler_settings(**cfg.sampler)["steps"]
    B = min(cfg.batch_size, len(test))
    compute = {"none": steps, "ilrr": round(steps * (B + 1) / B, 2), "sampling": cfg.k * steps + cfg.k + 1}
    config = jsonable(
        {
            "study": "ilrr",
            "model": name,
            **asdict(cfg),
            "sites": sites,
            "n_val": len(val),
            "n_test": len(test),
            "compute": compute,
            "steps": steps,
        }
    )
    work = _work(model, cfg, sites)
    with run_log(out, config) as log:
        items = batched_items(("sentiment", "val", "none"), val, cfg.batch_size, {"split": "val", "method": "none"})
        for s in cfg.strengths:
            items += batched_items(
                ("sentiment", "val", "ilrr", s), val, cfg.batch_size, {"split": "val", "method": "ilrr", "s": s}
            )
        recs = log.run(items, work, desc="ilrr validation", progress=progress)
        vrows, chosen = _choose_strength(recs, cfg)
        trecs = log.run(_test_items(test, chosen["s"], cfg), work, desc="ilrr test", progress=progress)
        log.merge()
    return ILRRStudyResult(name, config, vrows, chosen, _test_rows(trecs, cfg.seed), recs + trecs)


def _work(model: HookedMDM, cfg: ILRRConfig, sites: list[str]) -> Callable[[Item], list[dict]]:
    """`work(item)` for the run log: greedy generations (unsteered or under ILRR at strength s), or `cfg.k`
    samples each with its cosine similarity to the reference; every text scored with VADER."""
    from interventions import Plan, ReferenceAlignment

    ref_ids = model.tokenizer(cfg.reference, add_special_tokens=False)["input_ids"]
    ref_act: dict = {}

    def samples(prompts: list[str], base: dict, nll: bool) -> list[dict]:
        recs = []
        for j in range(cfg.k):
            texts = model.generate(
                prompts, seed=cfg.seed + 1 + j, **{**cfg.sampler, "temperature": cfg.temperature}
            ).texts
            rj = text_records(model, prompts, texts, nll=nll, cfg=cfg, base={**base, "sample_index": j})
            if "r" not in ref_act:
                ref_act["r"] = pooled_response(model, [prompts[0]], [cfg.reference], sites[-1])[0]
            sim = torch.nn.functional.cosine_similarity(
                pooled_response(model, prompts, texts, sites[-1]), ref_act["r"][None], dim=1
            )
            for r, s in zip(rj, sim.tolist()):
                r["ref_similarity"] = round(s, 6)
                r["seed"] = cfg.seed + 1 + j  # the seed of the sample run, not of the greedy runs
            recs += rj
        return recs

    def work(item: Item) -> list[dict]:
        p = item.payload
        prompts, method, nll = p["prompts"], p["method"], p["split"] == "test"
        base = {"task": "sentiment", "split": p["split"], "method": method, "lambda": p.get("s")}
        if method == "sample":
            recs = samples(prompts, base, nll)
        else:
            plan = (
                None
                if method == "none"
                else Plan.of(ReferenceAlignment(ref_ids, sites, s=p["s"], pooling=cfg.pooling, profile=cfg.profile))
            )
            texts = model.generate(prompts, plan=plan, seed=cfg.seed, **cfg.sampler).texts
            recs = text_records(model, prompts, texts, nll=nll, cfg=cfg, base=base)
        for r in recs:
            r["positive"] = positive(r["text"])
        return recs

    return work


def _choose_strength(recs: list[dict], cfg: ILRRConfig) -> tuple[list[dict], dict]:
    """(validation rows, the chosen strength): the highest positive rate among strengths whose degenerate share
    stays within max(`max_degenerate`, unsteered); ties: fewer degenerate, then the smaller s."""
    base_val = rate_row([r for r in recs if r["method"] == "none"], "positive", method="none", s=None)
    cap = max(cfg.max_degenerate, base_val["degenerate"])
    vrows = [base_val] + [
        rate_row([r for r in recs if r["method"] == "ilrr" and r["lambda"] == s], "positive", method="ilrr", s=s)
        for s in cfg.strengths
    ]
    allowed = [r for r in vrows[1:] if r["degenerate"] <= cap] or vrows[1:]
    best = max(allowed, key=lambda r: (r["rate"], -r["degenerate"], -r["s"]))
    return vrows, {"s": best["s"], "val_rate": best["rate"], "cap": cap, "within_cap": best["degenerate"] <= cap}


def _test_items(test: list[str], s: float, cfg: ILRRConfig) -> list[Item]:
    return (
        batched_items(("sentiment", "test", "none"), test, cfg.batch_size, {"split": "test", "method": "none"})
        + batched_items(
            ("sentiment", "test", "ilrr", s), test, cfg.batch_size, {"split": "test", "method": "ilrr", "s": s}
        )
        + [
            Item((*it.key[:-1], cfg.k, cfg.temperature, it.key[-1]), it.n * cfg.k, it.payload)
            for it in batched_items(
                ("sentiment", "test", "sample"), test, cfg.batch_size, {"split": "test", "method": "sample"}
            )
        ]
    )


def _test_rows(trecs: list[dict], seed: int) -> list[dict]:
    """Positive rate per method on test; the two sampling rows pick one sample per request (at random, and the
    one closest to the reference)."""
    rows = [rate_row([r for r in trecs if r["method"] == m], "positive", method=m) for m in ("none", "ilrr")]
    by_prompt: dict[str, list[dict]] = {}
    for r in trecs:
        if r["method"] == "sample":
            by_prompt.setdefault(r["prompt"], []).append(r)
    rng = random.Random(seed)
    picks_random = [cands[rng.randrange(len(cands))] for cands in by_prompt.values()]
    picks_ref = [max(cands, key=lambda r: (r["ref_similarity"], -r["sample_index"])) for cands in by_prompt.values()]
    rows.append(rate_row(picks_random, "positive", method="sample_random"))
    rows.append(rate_row(picks_ref, "positive", method="sample_best_ref"))
    return rows


def ilrr_verdicts(test: list[dict]) -> tuple[list[Verdict], list[Verdict]]:
    """(each method vs greedy no steering, ILRR vs each sampling baseline) from the study's `test` rows (also
    those in summary.json): the `Verdict`s that summary.md and the terminal both format."""
    from .verdicts import PAPER_ILRR_VS_SAMPLING, Verdict, count_of, damage_words

    def vs(m: str, b: str, label: str, paper: str) -> Verdict:
        r = next(x for x in test if x["method"] == m)
        base = next(x for x in test if x["method"] == b)
        damage = damage_words(r, base, "unsteered" if b == "none" else "sampling")
        return Verdict(label, count_of(r), r["n"], count_of(base), base["n"], damage, paper)

    greedy = [vs(m, "none", LABELS[m], "-") for m in ("ilrr", *SAMPLERS)]
    sampling = [vs("ilrr", m, f"ILRR vs {LABELS[m]}", PAPER_ILRR_VS_SAMPLING) for m in SAMPLERS]
    return greedy, sampling


def demo_section(model, out: str, model_name: str, quick: bool = False, seed: int = 0, progress: bool = True):
    """The demo's ILRR section: the study written into `out/ilrr/`, the figure at `out/ilrr.png`; summary.json
    gets `ilrr.{baseline_rate, ilrr_rate, ...}`."""
    import os
    from ..records import Section

    size = QUICK if quick else SMOL if model.config.get("mdm_lens_corpus") == "v3" else {}
    res = run_ilrr_study(
        model, ILRRConfig(**size, seed=seed), out=os.path.join(out, "ilrr"), model_name=model_name, progress=progress
    )
    res.plot(os.path.join(out, "ilrr.png"))
    md = [
        "## ILRR: alignment to a positive reference",
        "",
        res.table_markdown(),
        "",
        "- `ilrr.png`: positive rate per method with 95% intervals, beside NLL and % degenerate. Generations "
        "(every baseline sample too): `ilrr/generations.jsonl`.",
        "",
    ]
    return Section("ilrr", md, res.to_json(), ["ilrr.png"])
