"""mdm-lens: hooks, samplers and tracing for masked diffusion language models."""

from typing import Any

from .cache import ActivationCache, StepCache
from .collect import collect_by_step, collect_contrastive
from .context import StepContext
from .families import FamilySpec, register_family, tiny_config
from .hooked import HookedMDM
from .prompts import GenerationOutput
from .sampling import dream_generate, llada_generate
from .sites import get_act_name

__version__ = "0.1.0"
__all__ = [
    "HookedMDM",
    "StepContext",
    "StepCache",
    "ActivationCache",
    "GenerationOutput",
    "get_act_name",
    "collect_contrastive",
    "collect_by_step",
    "llada_generate",
    "dream_generate",
    "FamilySpec",
    "register_family",
    "tiny_config",
    "MDMEnvelope",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "MDMEnvelope":  # imports nnsight: only on use
        from .nnsight_interop import MDMEnvelope

        return MDMEnvelope
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
