"""Moved to the core: `mdm_lens.collect` (collection is tracing). Kept as a re-export for old imports."""
from mdm_lens.collect import POOLINGS, Activations, collect, collect_contrastive

__all__ = ["POOLINGS", "Activations", "collect", "collect_contrastive"]
