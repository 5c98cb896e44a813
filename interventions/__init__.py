"""Steering rules as composable intervention objects, with the optimal-transport math written here."""

from .affine import AffineMap
from .estimators import (
    ESTIMATORS,
    ActAdd,
    BuresOT,
    DirectionalAblation,
    GaussianOT,
    LinearACT,
    MeanACT,
    ProjectionClamp,
    fit_map,
)
from .fold import ablation_everywhere, fold
from .plan import Plan, fit_incremental
from .reference import ReferenceAlignment
from .sae import SAE, SAESplice
from .restrict import Restricted, TimestepSchedule, fit_schedule, restrict, support_bounds

__all__ = [
    "AffineMap",
    "ActAdd",
    "ablation_everywhere",
    "fold",
    "BuresOT",
    "DirectionalAblation",
    "ESTIMATORS",
    "GaussianOT",
    "LinearACT",
    "MeanACT",
    "Plan",
    "ProjectionClamp",
    "ReferenceAlignment",
    "Restricted",
    "SAE",
    "SAESplice",
    "TimestepSchedule",
    "fit_incremental",
    "fit_map",
    "fit_schedule",
    "restrict",
    "support_bounds",
]
