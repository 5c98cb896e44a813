"""The corpus that trained an organism, from its config.json (`mdm_lens_corpus`): v3 lives here (analyses),
v1 / v2 in `mdm_lens.organism` until they move. Prompts must come from the corpus that trained the model."""
from __future__ import annotations

from types import ModuleType


def corpus_for(config: dict | None) -> ModuleType:
    """The module with `KINDS`, `DEMO_KINDS`, `eval_items`, `calibration_pairs` for the model's corpus."""
    if (config or {}).get("mdm_lens_corpus") == "v3":
        from . import corpus_v3
        return corpus_v3
    from mdm_lens.organism import corpus_for as core
    return core(config)


def behaviours_for(config: dict | None) -> ModuleType:
    """The module with `refusal_prompts` and `sentiment_prompts` for the model's corpus (v2's for v1 / v2)."""
    if (config or {}).get("mdm_lens_corpus") == "v3":
        from . import corpus_v3
        return corpus_v3
    from mdm_lens.organism import behaviours
    return behaviours
