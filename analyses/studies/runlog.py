"""Resumable, data-parallel runs: every generation is a JSON line on disk, and a run is a list of work items.

Why: on an 8B model the protocol runs for hours; a crash must lose at most the item in flight, and a box with
several GPUs should use all of them. So the runners (`analyses.studies.experiment`, `analyses.studies.demo`) describe their
work as *items* (one `generate` batch each: task, split, method, λ, batch index) and hand them to a `RunLog`:

* **Resumable.** Each finished item's records are appended to a JSON-lines file in one `write`, flushed and
  fsynced, so a kill leaves whole lines (a torn line, or any damaged one, is skipped with a warning naming the
  file and line, and its item is redone). On start the log reads
  every `generations*.jsonl` in the folder and skips the items whose records are all there. Records are
  deduplicated by (item key, index), so an item redone after a kill adds nothing twice.
* **Same config or nothing.** `config.json` holds the run's config and its hash; a re-run with another config
  refuses to mix records and names the fields that differ. The folder is claimed atomically when the first
  records are written (so an option refused before any work leaves the folder free), and every record carries
  the hash too, so a lost `config.json` cannot let records of another config through (`runlog_io`).
* **Data parallel.** Under `accelerate launch --num_processes N` (or torchrun: RANK / WORLD_SIZE), item `i` of
  a phase belongs to rank `i % N`; each rank appends to its own `generations.rank{r}.jsonl`, so no two
  processes write one file; `barrier()` separates phases; rank 0 merges every record into one
  `generations.jsonl` in item order. An item is a fixed batch whatever N is, and every seed is per item, so
  the merged records (and the result computed from them) equal a single-process run's.
  On a CPU-only box accelerate's `--cpu` flag starts ONE process (its multi-CPU mode needs mpirun); start N
  CPU processes with its torchrun launcher instead: `accelerate launch --multi_gpu --num_processes N
  --no_python mdm-lens experiment ...` (no GPU needed; the processes talk over gloo).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from mdm_lens.safefile import write_text_atomic

from .runlog_io import HASH_KEY, ConfigMismatch, claim_config, env_int, read_config, read_records

MERGED = "generations.jsonl"


@dataclass(frozen=True)
class Item:
    """One unit of work: `key` names it (a tuple of JSON scalars, stable across runs); `n` records expected."""

    key: tuple
    n: int
    payload: Any = field(default=None, compare=False, hash=False)


def key_str(key: Sequence) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two JSON configs (nested dicts walked)."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{prefix}{k}: {_short(a)} -> {_short(b)}")
    return out


def _short(x) -> str:
    s = json.dumps(x, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def dist_env() -> tuple[int, int]:
    """(rank, world size) of this process: accelerate's PartialState when launched with several processes
    (it also sets up the process group the barrier needs), else (0, 1)."""
    world = env_int("WORLD_SIZE", 1)
    if world <= 1:
        return 0, 1
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on a CPU box, nccl on GPUs
    return state.process_index, state.num_processes


class RunLog:
    """The on-disk record of one run in `folder` (see the module docstring)."""

    def __init__(self, folder: str, config: dict, *, rank: int | None = None, world: int | None = None):
        if (rank is None) != (world is None):
            raise ValueError("give both rank and world, or neither (then they come from the launcher)")
        self.rank, self.world = (rank, world) if rank is not None else dist_env()
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.config = json.loads(json.dumps(config, default=str))
        self.hash = config_hash(self.config)
        self._claimed = False  # config.json is written with the first records (claim_config)
        self._check_config()
        self.path = os.path.join(folder, MERGED if self.world == 1 else f"generations.rank{self.rank}.jsonl")
        self.calls = 0  # items this process generated (tests count them)

    # ------------------------------------------------------------------ config
    def _check_config(self) -> None:
        self._compare(read_config(os.path.join(self.folder, "config.json")))
        self.barrier()

    def _compare(self, old: dict | None) -> None:
        if old is None:
            return
        if old["hash"] != self.hash:
            diff = config_diff(old["config"], self.config)
            raise ConfigMismatch(
                f"{self.folder} holds a run with another config (hash {old['hash']} vs {self.hash}); "
                f"differences: {'; '.join(diff) or 'none visible'}. Use another --out, or delete the folder "
                "to start over"
            )
        self._claimed = True

    def _claim(self) -> None:
        if not self._claimed:
            self._compare(claim_config(self.folder, self.hash, self.config))
            self._claimed = True

    # ------------------------------------------------------------------ records
    def records(self) -> dict[tuple[str, int], dict]:
        """Every record on disk, by (item key, index), first occurrence kept; torn lines skipped."""
        paths = sorted(glob.glob(os.path.join(self.folder, "generations*.jsonl")))
        return read_records(paths, self.hash, legacy_ok=self._claimed)

    def done(self, items: Iterable[Item]) -> set[str]:
        have: dict[str, int] = {}
        for k, _i in self.records():
            have[k] = have.get(k, 0) + 1
        return {key_str(it.key) for it in items if have.get(key_str(it.key), 0) >= it.n}

    def append(self, item: Item, records: list[dict]) -> None:
        if len(records) != item.n:
            raise ValueError(f"item {item.key} produced {len(records)} records, expected {item.n}")
        self._claim()
        k = key_str(item.key)
        lines = "".join(
            json.dumps({"item": k, "index": i, **r, "rank": self.rank, HASH_KEY: self.hash}, ensure_ascii=False) + "\n"
            for i, r in enumerate(records)
        )
        with open(self.path, "a+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    lines = "\n" + lines  # end a line torn by a kill: it stays unreadable, ours stay whole
            f.write(lines.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    # ------------------------------------------------------------------ work
    def run(
        self, items: Sequence[Item], work: Callable[[Item], list[dict]], desc: str = "items", progress: bool = True
    ) -> list[dict]:
        """Do this rank's missing items (`work(item)` -> its records), wait for every rank, and return every
        item's records in item order (all ranks get the full list)."""
        done = self.done(items)
        mine = [it for i, it in enumerate(items) if i % self.world == self.rank and key_str(it.key) not in done]
        for it in tqdm(
            mine, desc=f"{desc} (rank {self.rank})" if self.world > 1 else desc, disable=not progress or not mine
        ):
            self.append(it, work(it))
            self.calls += 1
        self.barrier()
        recs = self.records()
        out = []
        for it in items:
            k = key_str(it.key)
            got = [recs.get((k, i)) for i in range(it.n)]
            if any(g is None for g in got):
                raise RuntimeError(f"item {it.key} has no complete records after every rank finished")
            out += got
        return out

    def barrier(self) -> None:
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def merge(self) -> str | None:
        """Rank 0: write every record, sorted by (item key order of first appearance, index), into
        generations.jsonl atomically and remove the per-rank files (their records are in it)."""
        if self.rank != 0:
            self.barrier()
            return None
        self._claim()
        recs = self.records()
        merged = os.path.join(self.folder, MERGED)
        write_text_atomic(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for (_k, _i), r in sorted(recs.items())), merged
        )
        for p in glob.glob(os.path.join(self.folder, "generations.rank*.jsonl")):
            os.remove(p)
        self.barrier()
        return merged
