"""The run log's files, read and written so that nothing is mixed, lost or misread.

* `claim_config`: a folder belongs to one config. The claim is one atomic step (a complete temporary file
  hard-linked to `config.json`, which fails if the name exists), so two processes opening one fresh folder with
  different configs cannot both win; the loser compares and is refused.
* Every record carries its config's hash (`HASH_KEY`), so records are never reused under another config even
  when `config.json` was deleted or lost.
* `read_records`: lines that are not a whole record (torn by a kill, or damaged: bad UTF-8, bad JSON, not an
  object, no item/index) are skipped with one warning naming the file and lines; their items are generated again.
* `env_int`: launcher variables (WORLD_SIZE, RANK) that are not integers are named, not `int()`'s error.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path

from mdm_lens.safefile import _fsync_dir

HASH_KEY = "config_hash"
FIX = "use another --out, or delete the folder to start over"


class ConfigMismatch(ValueError):
    pass


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"{name}={raw!r} (from the environment) is not an integer; the launcher (accelerate launch, "
            f"torchrun) sets it to a process count or index. Unset it to run one process"
        ) from None


def read_config(path: str) -> dict | None:
    """The claimed {"hash", "config"} of a folder, None when unclaimed; a damaged file is named with the fix."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        old = json.loads(p.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigMismatch(
            f"{p} is damaged ({type(e).__name__}: {e}); it records which config made this folder's "
            f"records, so they cannot be checked: {FIX}"
        ) from None
    if not (isinstance(old, dict) and isinstance(old.get("hash"), str) and isinstance(old.get("config"), dict)):
        raise ConfigMismatch(
            f'{p} is damaged (expected {{"hash": str, "config": {{...}}}}, got '
            f"{json.dumps(old)[:80]}); it records which config made this folder's records: {FIX}"
        )
    return old


def claim_config(folder: str, hash_: str, config: dict) -> dict | None:
    """Write config.json unless it exists (atomically); returns what was there before (None: we claimed it)."""
    path = os.path.join(folder, "config.json")
    old = read_config(path)
    if old is not None:
        return old
    tmp = os.path.join(folder, f".config.json.{uuid.uuid4().hex[:12]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"hash": hash_, "config": config}, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another process claimed the folder first
        _fsync_dir(Path(folder))
        return None
    except FileExistsError:
        return read_config(path)
    except OSError:  # no hard links here: exclusive create, then the content
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return read_config(path)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(Path(tmp).read_text(encoding="utf-8"))
        return None
    finally:
        os.remove(tmp)


def _parse(raw: bytes) -> dict | None:
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("item"), str) or type(rec.get("index")) is not int:
        return None
    return rec


def read_records(paths: list[str], hash_: str, legacy_ok: bool) -> dict[tuple[str, int], dict]:
    """Every whole record by (item key, index), first kept. A record of another config is refused (file, line);
    one without a hash (written before records carried it) only when `legacy_ok` (config.json matched)."""
    out: dict[tuple[str, int], dict] = {}
    for p in paths:
        with open(p, "rb") as f:
            lines = f.read().split(b"\n")
        bad = []
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            rec = _parse(raw)
            if rec is None:
                bad.append(n)
                continue
            got = rec.get(HASH_KEY)
            if got is None and not legacy_ok:
                raise ConfigMismatch(
                    f"{p} line {n} is a record without a config hash and the folder has no "
                    f"config.json, so which config made it cannot be told: {FIX}"
                )
            if got is not None and got != hash_:
                raise ConfigMismatch(
                    f"{p} line {n} holds a record of another config (hash {got}, this run "
                    f"{hash_}); records are never reused across configs: {FIX}"
                )
            out.setdefault((rec["item"], rec["index"]), rec)
        if bad:
            shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
            warnings.warn(
                f"{p}: skipped {len(bad)} unreadable line(s) (line {shown}: torn by a kill or damaged); "
                "their items are generated again",
                stacklevel=3,
            )
    return out
