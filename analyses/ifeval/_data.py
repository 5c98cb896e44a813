"""Loading IFEval prompts and with/without-instruction contrastive pairs.

Prompts come from a local jsonl in the official ``input_data.jsonl`` format or
from the hub (only through ``datasets`` / ``huggingface_hub``, imported lazily,
since the toolkit must work offline). Contrastive pairs pair each prompt with a
constraint-free rewrite (``shared/ifeval`` files from llm-steer-instruct), the
raw material for instruction-steering calibration sets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

HUB_DATASET = "google/IFEval"
HUB_FILENAME = "ifeval_input_data.jsonl"


def clean_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop None / empty values, as the official harness does before building checkers."""
    return {k: v for k, v in dict(kwargs or {}).items() if v}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
    return rows


def _prompt_record(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    missing = [f for f in ("prompt", "instruction_id_list", "kwargs") if f not in row]
    if missing:
        raise ValueError(f"{where}: IFEval record lacks fields {missing}")
    ids = list(row["instruction_id_list"])
    kwargs = [clean_kwargs(kw) for kw in row["kwargs"]]
    if len(kwargs) != len(ids):
        raise ValueError(f"{where}: {len(ids)} instruction ids but {len(kwargs)} kwargs dicts")
    return {"key": row.get("key"), "prompt": row["prompt"], "instruction_id_list": ids, "kwargs": kwargs}


def _hub_rows(name: str) -> list[Mapping[str, Any]]:
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None:
        return list(datasets.load_dataset(name, split="train"))
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ImportError(
            f"loading {name!r} from the hub needs `datasets` or `huggingface_hub`; "
            "install one, or pass the path of a local input_data.jsonl"
        ) from exc
    local = hf_hub_download(repo_id=name, filename=HUB_FILENAME, repo_type="dataset")
    return _read_jsonl(Path(local))


def load_prompts(path_or_hub: str | os.PathLike = HUB_DATASET) -> list[dict[str, Any]]:
    """IFEval prompts as dicts ``{key, prompt, instruction_id_list, kwargs}`` (kwargs cleaned).

    A path to an existing file is read as jsonl; anything else that looks like
    a hub dataset id (``owner/name``) is fetched with ``datasets`` or
    ``huggingface_hub``.
    """
    path = Path(path_or_hub)
    if path.is_file():
        rows = _read_jsonl(path)
        return [_prompt_record(r, f"{path}:{i + 1}") for i, r in enumerate(rows)]
    text = str(path_or_hub)
    looks_local = (
        path.exists() or text.endswith((".jsonl", ".json")) or text.startswith((".", "/", "~")) or text.count("/") != 1
    )
    if isinstance(path_or_hub, os.PathLike) or looks_local:
        raise FileNotFoundError(f"no IFEval jsonl at {text!r}")
    return [_prompt_record(r, f"{text}[{i}]") for i, r in enumerate(_hub_rows(text))]


@dataclass(frozen=True)
class ContrastivePair:
    """An IFEval prompt with its instruction(s) and the same request without them."""

    key: Any
    prompt: str
    prompt_without_instruction: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...] | None  # None where the source file has no kwargs


def _pair(row: Mapping[str, Any], where: str) -> ContrastivePair:
    if "prompt_without_instruction" in row:  # ifeval_single_instr_format.jsonl
        with_instr, without = row["prompt"], row["prompt_without_instruction"]
    elif "original_prompt" in row and "model_output" in row:  # ifeval_wo_instructions.jsonl
        # There `prompt` is the rewriting request sent to an LLM; `model_output` its answer.
        with_instr, without = row["original_prompt"], row["model_output"]
    else:
        raise ValueError(
            f"{where}: expected (prompt, prompt_without_instruction) or "
            f"(original_prompt, model_output), got fields {sorted(row)}"
        )
    kwargs = row.get("kwargs")
    return ContrastivePair(
        key=row.get("key"),
        prompt=with_instr,
        prompt_without_instruction=without,
        instruction_id_list=tuple(row.get("instruction_id_list") or ()),
        kwargs=None if kwargs is None else tuple(clean_kwargs(k) for k in kwargs),
    )


def load_contrastive_pairs(path: str | os.PathLike) -> list[ContrastivePair]:
    """Read either shared/ifeval jsonl file into ContrastivePair records."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no contrastive-pair jsonl at {str(path)!r}")
    return [_pair(r, f"{path}:{i + 1}") for i, r in enumerate(_read_jsonl(path))]


def attach_kwargs(pairs: Iterable[ContrastivePair], prompts: Iterable[Mapping[str, Any]]) -> list[ContrastivePair]:
    """Fill missing kwargs of pairs from IFEval prompt records with the same key."""
    by_key = {p["key"]: p for p in prompts}
    out = []
    for pair in pairs:
        record = by_key.get(pair.key)
        if pair.kwargs is None and record is not None:
            pair = ContrastivePair(
                pair.key,
                pair.prompt,
                pair.prompt_without_instruction,
                pair.instruction_id_list,
                tuple(record["kwargs"]),
            )
        out.append(pair)
    return out
