"""The OT-steering paper's protocol: contrastive calibration -> fit every estimator -> pick λ on a
validation split -> score the test split with IFEval, with 95% intervals, per constraint and averaged.

Every generation is a record on disk (`OUT/generations.jsonl`: prompt, text, strict and loose verdicts per
instruction, and its damage: NLL per token under the *unsteered* model and a degeneracy flag, see
`analyses.damage`), because an IFEval verdict alone cannot tell a steered model from a broken one. The work is
a list of items (one `generate` batch each) run through `analyses.studies.runlog.RunLog`: a re-run resumes, and
`accelerate launch --num_processes N` shards the items over N processes with one merged, identical result.

Phases: (1) unsteered val + test, and every method × λ on val; (2) λ chosen per (task, method) from the
validation records only, optionally capped by damage; (3) each method at its λ on test. Calibration and
fitting happen lazily, in each process, only for a task that still has items to generate.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mdm_lens.generation import check_sampler_settings
from mdm_lens.validate import check_mc, check_seed, is_real

from .kernel import StudyConfig, damage_fields, model_name_of, run_log
from .runlog import Item

if TYPE_CHECKING:
    from mdm_lens import HookedMDM

METHODS = (
    "none",
    "directional_ablation",
    "mean_act",
    "actadd",
    "gaussian_ot",
    "linear_act",
    "bures_ot",
    "linear_act_t",
)
# Per-timestep Linear-ACT (the OT-view paper's future work): one Linear-ACT map per t in `ExperimentConfig.t_levels`,
# fitted on activations collected during real generations at the step where that share of the response is masked.
PER_T_METHODS = {"linear_act_t": "linear_act"}
# The paper steers Directional Ablation and ActAdd on the residual stream, as their authors recommend.
RESIDUAL_METHODS = ("directional_ablation", "actadd")


@dataclass
class EvalRecord:
    """One IFEval-style item: a prompt and the verifiable instructions it carries."""

    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict]
    key: Any = None


@dataclass
class Task:
    """A steering target: calibration prompts without (source) / with (target) the instruction."""

    name: str
    source: list[str]
    target: list[str]
    val: list[EvalRecord]
    test: list[EvalRecord]


@dataclass
class ExperimentConfig(StudyConfig):
    """Protocol settings (the shared ones: `analyses.studies.kernel.StudyConfig`). λ selection on validation
    keeps only strengths whose share of degenerate texts is at most max(`max_degenerate`, the unsteered share)
    and, when `max_nll_increase` is set, whose mean NLL exceeds the unsteered one by at most that many nats per
    token; when no λ qualifies, the least damaging one is taken and the report says so. `sampler`:
    {"sampler": "fast", "cache": ..., "threshold": ...} picks Fast-dLLM's KV-cached sampler."""

    n_test: int = 64
    max_degenerate: float = 0.5
    mc_num: int = 16  # a damage gauge, not a benchmark
    methods: tuple[str, ...] = METHODS
    sites: tuple[str, ...] | None = None  # default: the mlp_pre and mlp_out sites of every layer
    residual_sites: tuple[str, ...] | None = None  # default: hook_resid_post of every layer
    lambdas: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)  # brackets the optimum from below (issue 25)
    pooling: str = "mean"
    scope: str = "all"
    n_calib: int = 128
    method_options: dict = field(default_factory=dict)
    max_nll_increase: float | None = None
    t_levels: tuple[float, ...] = (1.0, 0.67, 0.33)  # per-timestep methods: the t each map is fitted at


def default_sites(model: HookedMDM) -> tuple[list[str], list[str]]:
    """(MLP sites: pre-activation and output of every layer, residual sites: every layer's resid_post)."""
    from mdm_lens.sites import get_act_name

    mlp = [get_act_name(role, layer) for layer in range(model.n_layers) for role in ("mlp_pre", "mlp_out")]
    return mlp, model.site_names(["resid_post"])


def _check_sizes(task: Task, cfg: ExperimentConfig) -> None:
    if len(task.source) != len(task.target):
        raise ValueError(
            f"task {task.name!r}: calibration sets have {len(task.source)} source and "
            f"{len(task.target)} target prompts; the protocol pairs them, give equal sizes"
        )
    if not task.source:
        raise ValueError(f"task {task.name!r}: empty calibration set")
    if len(task.test) < 1 or len(task.val) < 1:
        raise ValueError(f"task {task.name!r}: needs at least one validation and one test item")


def _check_config(cfg: ExperimentConfig) -> None:
    cfg.check()
    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if not cfg.lambdas:
        raise ValueError("empty λ grid: give at least one strength (e.g. lambdas=(0.5, 1.0))")
    bad = [lam for lam in cfg.lambdas if not (is_real(lam) and math.isfinite(lam))]
    if bad:
        raise ValueError(f"lambdas {bad}: every strength must be a finite number (e.g. lambdas=(0.5, 1.0))")
    # everything generate / the likelihood would refuse mid-run is refused here, before the run log's first byte
    check_sampler_settings(dict(cfg.sampler), {k: "ExperimentConfig.sampler" for k in cfg.sampler})
    check_mc(cfg.mc_num, cfg.mc_batch)
    check_seed(cfg.seed, "ExperimentConfig.seed")
    if not 0 <= cfg.max_degenerate <= 1:
        raise ValueError(f"max_degenerate={cfg.max_degenerate}: a share of texts, must be in [0, 1]")
    if cfg.max_nll_increase is not None and cfg.max_nll_increase < 0:
        raise ValueError(f"max_nll_increase={cfg.max_nll_increase}: nats per token, must be >= 0 (or None: no cap)")


def score(records: Sequence[EvalRecord], texts: Sequence[str]) -> list[bool]:
    """Prompt-level strict IFEval verdicts."""
    from .. import ifeval

    return [
        all(ifeval.check(t, r.instruction_id_list, r.kwargs, r.prompt, loose=False)) for r, t in zip(records, texts)
    ]


FULL_COVARIANCE = ("gaussian_ot", "bures_ot")  # a d x d map: needs more samples than dimensions


def warn_underdetermined(method: str, src, sites: Sequence[str]) -> str | None:
    """A warning (issued and returned) when `method` is fitted on fewer samples than its map has free parameters
    per dimension: a full-covariance map needs n > d (else its covariances are singular), a per-dimension map
    n >= 2. Such fits return maps that can silence the model (empty texts) without any error."""
    import warnings

    n, d = int(src[sites[0]].shape[0]), int(src[sites[0]].shape[-1])
    need = d + 1 if method in FULL_COVARIANCE else 2
    if n >= need:
        return None
    msg = (
        f"{method} fitted on {n} samples per site at {len(sites)} site(s) of width {d}: fewer than the {need} it "
        f"needs to be determined ({'a full covariance' if need > 2 else 'two points per dimension'}); its map "
        "is under-determined. Give more calibration pairs (--n-calib) or a diagonal method"
    )
    warnings.warn(msg, stacklevel=2)
    return msg


def fit_plan(method: str, src, tgt, sites: Sequence[str], options: dict):
    from interventions import Plan, fit_map

    warn_underdetermined(method, src, sites)
    return Plan({s: fit_map(method, src[s], tgt[s], **options.get(method, {})) for s in sites})


# ------------------------------------------------------------------------------------------- generation items
def generation_items(
    task: str, split: str, method: str, lam: float | None, evals: Sequence[EvalRecord], batch_size: int
) -> list[Item]:
    """One item per batch of `evals`: a fixed batch whatever the process count, so results never depend on it."""
    return [
        Item(
            ("gen", task, split, method, lam, i),
            len(evals[i : i + batch_size]),
            (task, split, method, lam, list(evals[i : i + batch_size])),
        )
        for i in range(0, len(evals), batch_size)
    ]


def generation_work(model, cfg: ExperimentConfig, plan_for: Callable[[str, str, float | None], Any]):
    """`work(item)` for `RunLog.run`: generate the item's batch under `plan_for(task, method, λ)`, score each
    text with the IFEval checkers (strict and loose), and measure its damage under the unsteered model."""
    from .. import ifeval
    from ..damage import damage

    def work(item: Item) -> list[dict]:
        task, split, method, lam, evals = item.payload
        prompts = [e.prompt for e in evals]
        plan = plan_for(task, method, lam)
        texts = model.generate(prompts, plan=plan, seed=cfg.seed, **cfg.sampler).texts
        dmg = damage(model, prompts, texts, mc_num=cfg.mc_num, batch_size=cfg.mc_batch, seed=cfg.seed)
        recs = []
        for e, text, d in zip(evals, texts, dmg):
            strict = ifeval.check(text, e.instruction_id_list, e.kwargs, e.prompt, loose=False)
            loose = ifeval.check(text, e.instruction_id_list, e.kwargs, e.prompt, loose=True)
            if not text.strip():  # an empty output follows no instruction ("no commas" would pass)
                strict, loose = [False] * len(strict), [False] * len(loose)
            recs.append(
                {
                    "task": task,
                    "split": split,
                    "method": method,
                    "lambda": lam,
                    "key": e.key,
                    "prompt": e.prompt,
                    "text": text,
                    "instructions": list(e.instruction_id_list),
                    "strict": [bool(v) for v in strict],
                    "loose": [bool(v) for v in loose],
                    "follow_strict": all(strict),
                    "follow_loose": all(loose),
                    **damage_fields(d),
                    "seed": cfg.seed,
                }
            )
        return recs

    return work


class PlanCache:
    """Fits a task's plans on first use (calibration collected once per task, in the process that needs it).
    `fits` / `collections` count the plans fitted and the calibration sets collected (tests hold them to once)."""

    def __init__(
        self,
        model: HookedMDM,
        tasks: Sequence[Task],
        cfg: ExperimentConfig,
        sites: Sequence[str],
        rsites: Sequence[str],
    ):
        self.model, self.tasks, self.cfg = model, {t.name: t for t in tasks}, cfg
        self.sites, self.rsites = list(sites), list(rsites)
        self._acts: dict[str, tuple] = {}
        self._acts_t: dict[str, tuple] = {}
        self._plans: dict[tuple[str, str], Any] = {}
        self.fits = 0
        self.collections = 0

    def activations(self, task: str):
        if task not in self._acts:
            from mdm_lens.collect import collect_contrastive

            t, cfg = self.tasks[task], self.cfg
            needed = sorted(set(self.sites) | (set(self.rsites) if set(cfg.methods) & set(RESIDUAL_METHODS) else set()))
            self.collections += 1
            self._acts[task] = collect_contrastive(
                self.model,
                t.source[: cfg.n_calib],
                t.target[: cfg.n_calib],
                needed,
                pooling=cfg.pooling,
                scope=cfg.scope,
                progress=False,
                **_collect_kwargs(self.model, cfg),
            )
        return self._acts[task]

    def step_activations(self, task: str) -> tuple[dict, dict]:
        """(source, target) activations per step, collected during real generations at the steps where the
        shares `cfg.t_levels` of the response are still masked (`mdm_lens.collect.collect_by_step`)."""
        if task not in self._acts_t:
            from mdm_lens.collect import collect_by_step

            t, cfg = self.tasks[task], self.cfg
            n_steps = self.model.sampler_settings(**cfg.sampler)["steps"]
            steps = sorted({min(n_steps - 1, round((1 - lvl) * n_steps)) for lvl in cfg.t_levels})
            sampler = {k: v for k, v in cfg.sampler.items() if k != self.model.spec.length_key}
            kw = dict(
                pooling=cfg.pooling,
                scope=cfg.scope,
                progress=False,
                seed=cfg.seed,
                **sampler,
                **_collect_kwargs(self.model, cfg),
            )
            self.collections += 1
            self._acts_t[task] = (
                collect_by_step(self.model, t.source[: cfg.n_calib], self.sites, steps, **kw),
                collect_by_step(self.model, t.target[: cfg.n_calib], self.sites, steps, **kw),
            )
        return self._acts_t[task]

    def plan(self, task: str, method: str, lam: float | None):
        if method == "none":
            return None
        if (task, method) in self._plans:
            return self._plans[(task, method)].strength(lam)
        if method in PER_T_METHODS:
            from interventions import Plan
            from interventions.restrict import fit_schedule

            src, tgt = self.step_activations(task)
            opts = self.cfg.method_options.get(method, {})
            t_of = {step: a.meta["t"] for step, a in src.items()}  # the same steps mask the same share
            self._plans[(task, method)] = Plan(
                {
                    site: fit_schedule(
                        {t_of[k]: a[site] for k, a in src.items()},
                        {t_of[k]: a[site] for k, a in tgt.items()},
                        PER_T_METHODS[method],
                        **opts,
                    )
                    for site in self.sites
                }
            )
        else:
            src, tgt = self.activations(task)
            sites = self.rsites if method in RESIDUAL_METHODS else self.sites
            self._plans[(task, method)] = fit_plan(method, src, tgt, sites, self.cfg.method_options)
        self.fits += 1
        return self._plans[(task, method)].strength(lam)


# ------------------------------------------------------------------------------------------- the protocol
@dataclass
class ExperimentSetup:
    """What a run decides before it generates: the run config (the run log's identity) and the plans (a
    `PlanCache`: each (task, method) fitted once, on first use). A caller that goes on steering after the
    protocol (the demo's composition and effects) passes the same setup on, so nothing is fitted twice."""

    config: dict
    plans: PlanCache

    @property
    def sites(self) -> list[str]:
        return self.plans.sites


def setup_experiment(
    model: HookedMDM, tasks: Sequence[Task], cfg: ExperimentConfig, model_name: str | None = None
) -> ExperimentSetup:
    """Check `cfg` and `tasks`, resolve the sites (`cfg.sites`, else `default_sites`) and build the setup."""
    _check_config(cfg)
    for task in tasks:
        _check_sizes(task, cfg)
    mlp_sites, resid_sites = default_sites(model)
    sites, rsites = list(cfg.sites or mlp_sites), list(cfg.residual_sites or resid_sites)
    config = run_config(model_name_of(model, model_name), tasks, cfg, sites, rsites)
    return ExperimentSetup(config, PlanCache(model, tasks, cfg, sites, rsites))


def run_experiment(
    model: HookedMDM,
    tasks: Sequence[Task],
    cfg: ExperimentConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    out: str | None = None,
    model_name: str | None = None,
    rank: int | None = None,
    world: int | None = None,
    setup: ExperimentSetup | None = None,
) -> dict:
    """Run the whole protocol; returns a JSON-ready dict holding every setting needed to repeat it.

    `out`: folder of the run's records (`generations.jsonl`, `config.json`); a re-run with the same folder and
    config generates nothing again. None: a temporary folder (no resume). `rank` / `world`: default from the
    launcher (accelerate / torchrun environment), see `analyses.studies.runlog`. `setup`: from
    `setup_experiment` (built here when None); its plans are fitted as the protocol needs them and stay cached."""
    from .experiment_report import choose_lambda, result_from_records

    cfg = cfg or ExperimentConfig()
    setup = setup or setup_experiment(model, tasks, cfg, model_name)
    work = generation_work(model, cfg, setup.plans.plan)
    steered = [m for m in cfg.methods if m != "none"]
    with run_log(out, setup.config, rank=rank, world=world) as runlog:
        recs = runlog.run(_validation_items(tasks, cfg, steered), work, desc="validation", progress=progress)
        choice = {(t.name, m): choose_lambda(recs, t.name, m, cfg) for t in tasks for m in steered}
        phase2 = [
            it
            for t in tasks
            for m in steered
            for it in generation_items(
                t.name, "test", m, choice[(t.name, m)]["lambda"], t.test[: cfg.n_test], cfg.batch_size
            )
        ]
        recs += runlog.run(phase2, work, desc="test", progress=progress)
        runlog.merge()
    result = result_from_records(recs, tasks, cfg, choice, setup.config)
    result["sampler_resolved"] = resolved_sampler(model, cfg.sampler)  # what ran, not only what was passed
    if log:
        for r in result["rows"]:
            log(f"{r['task']} {r['method']}: λ={r['lambda']} test acc {r['accuracy']:.2f}")
    return result


def _validation_items(tasks: Sequence[Task], cfg: ExperimentConfig, steered: Sequence[str]) -> list[Item]:
    """Phase 1: unsteered val + test, and every steered method × λ on val."""
    items: list[Item] = []
    for t in tasks:
        val, test = t.val[: cfg.n_val], t.test[: cfg.n_test]
        items += generation_items(t.name, "val", "none", None, val, cfg.batch_size)
        items += generation_items(t.name, "test", "none", None, test, cfg.batch_size)
        for m in steered:
            for lam in cfg.lambdas:
                items += generation_items(t.name, "val", m, lam, val, cfg.batch_size)
    return items


def resolved_sampler(model, overrides: dict) -> dict:
    """The sampler settings a generation with `overrides` uses (family recommendation merged in), JSON-ready."""
    settings = dict(overrides)
    name = settings.pop("sampler", "reference")
    return json.loads(json.dumps({"sampler": name, **model.sampler_settings(name, **settings)}, default=str))


def run_config(model_name, tasks: Sequence[Task], cfg: ExperimentConfig, sites, rsites) -> dict:
    """Everything that decides the records: a re-run whose config differs refuses to reuse them."""

    def digest(t: Task) -> str:
        body = json.dumps(
            [
                t.source[: cfg.n_calib],
                t.target[: cfg.n_calib],
                [asdict(e) for e in t.val[: cfg.n_val]],
                [asdict(e) for e in t.test[: cfg.n_test]],
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    return {
        "model": model_name,
        "experiment": _config_dict(cfg, sites, rsites),
        "tasks": [
            {
                "name": t.name,
                "n_calib": min(len(t.source), cfg.n_calib),
                "n_val": min(len(t.val), cfg.n_val),
                "n_test": min(len(t.test), cfg.n_test),
                "prompts_sha256": digest(t),
            }
            for t in tasks
        ],
    }


def _collect_kwargs(model: HookedMDM, cfg: ExperimentConfig) -> dict:
    """The response length the sampler settings give, under the family's key (`spec.length_key`), as
    `collect`'s `gen_length`; nothing when they give none (then collect uses the model's default)."""
    gen = cfg.sampler.get(model.spec.length_key)
    return {"gen_length": gen} if gen else {}


def _config_dict(cfg: ExperimentConfig, sites, rsites) -> dict:
    d = asdict(cfg)
    d.update(
        {
            "sites": list(sites),
            "residual_sites": list(rsites),
            "lambdas": list(cfg.lambdas),
            "methods": list(cfg.methods),
        }
    )
    return json.loads(json.dumps(d, default=str))


def write_result(result: dict, folder: str) -> dict[str, str]:
    """result.json, rows.csv, summary.md and the figures (see `analyses.studies.experiment_report.write_report`)."""
    from .experiment_report import write_report

    return write_report(result, folder)
