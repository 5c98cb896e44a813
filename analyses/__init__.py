"""Measurements a researcher imports: sweeps, moment mismatch, per-step effects, the logit lens, damage,
scorers (refusal, sentiment, IFEval), intervals and records. Paper protocols live in `analyses.studies`,
the `mdm-lens` command in `analyses.cli`, benchmarks in `analyses.bench`.

Importing `analyses` loads nothing heavy (the CLI's `--help` stays torch-free): each name below is imported
from its module on first use."""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "layer_sweep": "sweep",
    "sweep_sites": "sweep",
    "sweep_cells": "sweep",
    "cell_plan": "sweep",
    "resolve_metric": "sweep",
    "SweepResult": "sweep",
    "Cell": "sweep",
    "moment_mismatch": "moments",
    "MomentReport": "moments",
    "step_effects": "effects",
    "StepEffects": "effects",
    "logit_lens": "logit_lens",
    "layer_summary": "logit_lens",
    "LensResult": "logit_lens",
    "damage": "damage",
    "degeneracy": "damage",
    "RefusalScorer": "refusal",
    "is_refusal": "refusal",
    "refusal_rate": "refusal",
    "vader_positive_rate": "sentiment",
    "wilson_interval": "stats",
    "write_csv": "records",
    "write_json": "records",
    "write_records": "records",
    "write_study": "records",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
