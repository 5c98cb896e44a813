"""What every study shares: the config fields they all have, a run log whose temporary folder is always
removed, rate rows with Wilson intervals, generation records with damage, work items, and the formatting
of rates and numbers in reports.

Why one place: the experiment, refusal and ILRR studies and the demo are four protocols over one machinery
(generate in batches through `analyses.studies.runlog`, score, measure damage, report rates with 95%
intervals). A fix to any of these (a torn temp folder, an interval, a rounding) must reach all four.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..stats import wilson_interval
from .runlog import Item, RunLog

if TYPE_CHECKING:
    from mdm_lens import HookedMDM

NLL_DIGITS = 6  # records keep 6 decimals: equal across processes whose float reductions differ in the last bit


@dataclass
class StudyConfig:
    """The fields every study has. Sizes: `n_val` validation and `n_test` test items; generation in batches
    of `batch_size` with `seed`; `sampler` overrides the checkpoint's recommended sampler settings; damage:
    `mc_num` Monte-Carlo rows in mini-batches of `mc_batch` per NLL estimate; a setting is eligible on
    validation only while its share of degenerate texts stays within max(`max_degenerate`, unsteered)."""

    n_val: int = 10
    n_test: int = 32
    max_degenerate: float = 0.2
    batch_size: int = 32
    seed: int = 0
    sampler: dict = field(default_factory=dict)
    mc_num: int = 8
    mc_batch: int = 8

    def check(self) -> None:
        """Refuse settings no study can run with, naming the value and the valid range."""
        if not 0 <= self.max_degenerate <= 1:
            raise ValueError(f"max_degenerate={self.max_degenerate}: a share of texts, must be in [0, 1]")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1")


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON values (tuples -> lists, unknown objects -> str): what a run log stores and hashes."""
    return json.loads(json.dumps(obj, default=str))


def model_name_of(model: HookedMDM, model_name: str | None) -> str | None:
    """The name a report gives the model: the caller's, else the checkpoint's."""
    return model_name or getattr(model, "name_or_path", None)


@contextmanager
def run_log(out: str | None, config: dict, *, rank: int | None = None, world: int | None = None) -> Iterator[RunLog]:
    """A `RunLog` in `out`, or in a temporary folder when `out` is None (no resume); the temporary folder is
    removed when the block ends, also when it ends with an error."""
    tmp = tempfile.TemporaryDirectory() if out is None else None
    try:
        yield RunLog(out or tmp.name, config, rank=rank, world=world)  # type: ignore[union-attr]
    finally:
        if tmp is not None:
            tmp.cleanup()


def batched_items(key: tuple, prompts: Sequence[str], batch_size: int, payload: dict) -> list[Item]:
    """One item per batch of `prompts` (key `(*key, start)`): a fixed batch whatever the process count."""
    return [
        Item((*key, i), len(prompts[i : i + batch_size]), {**payload, "prompts": list(prompts[i : i + batch_size])})
        for i in range(0, len(prompts), batch_size)
    ]


def rate_row(records: Sequence[dict], flag: str, **extra: Any) -> dict:
    """{n, k, rate, ci_low, ci_high, nll, degenerate} for the share of `records` whose `flag` is true."""
    n = len(records)
    if n == 0:
        raise ValueError(f"no records to compute the {flag!r} rate from")
    k = sum(bool(r[flag]) for r in records)
    lo, hi = wilson_interval(k, n)
    nll = [r["nll"] for r in records if r.get("nll") is not None]
    return {
        **extra,
        "n": n,
        "k": k,
        "rate": k / n,
        "ci_low": lo,
        "ci_high": hi,
        "nll": sum(nll) / len(nll) if nll else None,
        "degenerate": sum(r["degenerate"] for r in records) / n,
    }


def text_records(
    model: HookedMDM, prompts: Sequence[str], texts: Sequence[str], *, nll: bool, cfg: StudyConfig, base: dict
) -> list[dict]:
    """The runner's record fields for each generation: prompt, text, damage (NLL only when `nll`), seed."""
    from ..damage import damage, degeneracy

    if nll:
        dmg = damage(model, prompts, texts, mc_num=cfg.mc_num, batch_size=cfg.mc_batch, seed=cfg.seed)
    else:
        dmg = [
            {
                "nll": None,
                "degenerate": bool(degeneracy(t)),
                "reasons": degeneracy(t),
                "n_chars": len(t),
                "n_tokens": None,
            }
            for t in texts
        ]
    return [
        {**base, "prompt": p, "text": t, **damage_fields(d), "seed": cfg.seed} for p, t, d in zip(prompts, texts, dmg)
    ]


def damage_fields(d: dict) -> dict:
    """A record's damage fields from one `analyses.damage.damage` row, NLL rounded to `NLL_DIGITS`."""
    return {
        "nll": None if d["nll"] is None else round(d["nll"], NLL_DIGITS),
        "degenerate": d["degenerate"],
        "reasons": d["reasons"],
        "n_chars": d["n_chars"],
        "n_tokens": d["n_tokens"],
    }


# ------------------------------------------------------------------------------------------- formatting
def pct(x: float | None) -> str:
    """A share as a percentage with one decimal ("n/a" for None)."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals ("n/a" for None)."""
    return "n/a" if x is None else f"{x:.{digits}f}"


def ci(r: dict) -> str:
    """A row's 95% interval in percent: "[lo, hi]"."""
    return f"[{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
