"""Tidy records on disk: the one CSV writer (the `csv` module quotes commas, quotes and newlines) and the
JSON + CSV pair that every `mdm-lens` analysis command writes."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence


def write_csv(path: str | os.PathLike, records: Iterable[dict], columns: Sequence[str] | None = None) -> None:
    """One row per record, every row as wide as the header; a key a record lacks is an empty cell.

    `columns` fixes the order (default: keys in order of first appearance)."""
    records = list(records)
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in records for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)


def write_records(folder: str | os.PathLike, name: str, records: list[dict]) -> dict[str, str]:
    """`name.json` (every field) and `name.csv` (every field but tracebacks) in `folder`."""
    os.makedirs(folder, exist_ok=True)
    paths = {"json": os.path.join(folder, f"{name}.json"), "csv": os.path.join(folder, f"{name}.csv")}
    with open(paths["json"], "w") as f:
        json.dump(records, f, indent=2, default=str)
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
