"""Reference-exact samplers, plain functions over any forward callable."""

from .common import StepClock, StepInfo, announcing
from .dream import dream_generate
from .dream_cached import dream_generate_cached
from .llada import get_num_transfer_tokens, llada_generate
from .llada_cached import llada_generate_cached
from .llada2 import llada2_generate
from .llada21 import llada21_generate
from .llada2_cached import llada2_generate_cached

__all__ = [
    "StepClock",
    "StepInfo",
    "announcing",
    "dream_generate",
    "dream_generate_cached",
    "get_num_transfer_tokens",
    "llada_generate",
    "llada_generate_cached",
    "llada2_generate",
    "llada21_generate",
    "llada2_generate_cached",
]
