"""Tidy records on disk: the one CSV writer (the `csv` module quotes commas, quotes and newlines), the JSON +
CSV pair that every `mdm-lens` analysis command writes, and a study's JSON + markdown + figure. Every file is
written whole or not at all (`mdm_lens.safefile.write_text_atomic`): an interrupted run never leaves half a file."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

from mdm_lens.safefile import write_text_atomic


def write_csv(path: str | os.PathLike, records: Iterable[dict], columns: Sequence[str] | None = None) -> None:
    """One row per record, every row as wide as the header; a key a record lacks is an empty cell.

    `columns` fixes the order (default: keys in order of first appearance)."""
    records = list(records)
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=cols, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    write_text_atomic(buf.getvalue(), path)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Indented JSON (non-JSON values as their str), written whole."""
    write_text_atomic(json.dumps(data, indent=2, default=str), path)


def write_records(folder: str | os.PathLike, name: str, records: list[dict]) -> dict[str, str]:
    """`name.json` (every field) and `name.csv` (every field but tracebacks) in `folder`."""
    os.makedirs(folder, exist_ok=True)
    paths = {"json": os.path.join(folder, f"{name}.json"), "csv": os.path.join(folder, f"{name}.csv")}
    write_json(paths["json"], records)
    cols = [k for k in dict.fromkeys(k for r in records for k in r) if k != "traceback"]
    write_csv(paths["csv"], records, cols)
    return paths


@dataclass
class Section:
    """One part of a report: markdown lines, JSON-ready data (under `key` in summary.json), figure files."""

    key: str
    markdown: list[str]
    data: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


class StudyResult(Protocol):
    """What a study run returns (`analyses.studies.refusal_study`, `analyses.studies.ilrr_study`)."""

    def to_json(self) -> dict: ...

    def table_markdown(self) -> str: ...

    def plot(self, path: str) -> str: ...


def write_study(result: StudyResult, folder: str | os.PathLike, name: str, figure: str) -> dict[str, str]:
    """`name.json`, `name.md` (the study's tables) and the PNG `figure` in `folder`."""
    paths = {
        "json": os.path.join(folder, f"{name}.json"),
        "md": os.path.join(folder, f"{name}.md"),
        "png": os.path.join(folder, figure),
    }
    write_json(paths["json"], result.to_json())
    write_text_atomic(result.table_markdown() + "\n", paths["md"])
    result.plot(paths["png"])
    return paths
