"""mdm-lens: hooks, samplers and tracing for masked diffusion language models."""
from .cache import ActivationCache, StepCache
from .context import StepContext
from .hooked import HookedMDM
from .prompts import GenerationOutput
from .sites import get_act_name

__version__ = "0.1.0"
__all__ = ["HookedMDM", "StepContext", "StepCache", "ActivationCache", "GenerationOutput", "get_act_name",
           "__version__"]
