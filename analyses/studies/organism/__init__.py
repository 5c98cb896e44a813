"""Model organisms: procedural corpora, their tokenizer, and the masked-diffusion training loop.

`corpus_v1` trained the packaged `tiny-if`; `corpus` + `behaviours` (v2: instructions, refusal, sentiment) train
`tiny-mdm`; `corpus_v3` (natural English, held out by template and subject) trains `smol-mdm`, the converted
SmolLM2-135M-Instruct (`convert`, `vocab`, `train_v3`). Prompts must come from the corpus that trained the model, or the held-out numbers measure nothing:
`corpus_for(model.config)` picks it from the checkpoint's `mdm_lens_corpus` entry (absent: v1, as in tiny-if).
"""

from __future__ import annotations

from types import ModuleType

CORPORA = ("v1", "v2", "v3")


def corpus_for(config: dict | None) -> ModuleType:
    """The corpus module whose prompts match the model's training (`config` is the checkpoint's config.json)."""
    version = (config or {}).get("mdm_lens_corpus", "v1")
    if version == "v1":
        from . import corpus_v1

        return corpus_v1
    if version == "v2":
        from . import corpus

        return corpus
    if version == "v3":
        from . import corpus_v3

        return corpus_v3
    raise ValueError(f"config mdm_lens_corpus={version!r} is not a known organism corpus; use one of {CORPORA}")


def behaviours_for(config: dict | None) -> ModuleType:
    """The module with `refusal_prompts` and `sentiment_prompts` for the model's corpus (v2's serve v1 and v2)."""
    if (config or {}).get("mdm_lens_corpus") == "v3":
        from . import corpus_v3

        return corpus_v3
    from . import behaviours

    return behaviours
