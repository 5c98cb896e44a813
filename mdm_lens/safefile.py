"""The one place where files are written and safetensors files are opened.

Writes are atomic: every file is first written to a temporary name in its own folder, then moved over the
target with `os.replace`, so a reader (or a crash, a full disk, a Ctrl-C) sees either the old file or the
complete new one. `StagedWrites` extends this to a group of files (a checkpoint's shards, index and
config.json): nothing is replaced until every file of the group is written. A replaced file keeps its mode;
a new one gets the ordinary umask mode (not mkstemp's 0600).

Reads go through `open_safetensors`, which names the path, what the file was meant to be, and the cause
when the file is missing, truncated, corrupt or foreign.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

__all__ = [
    "StagedWrites",
    "save_safetensors_atomic",
    "write_text_atomic",
    "write_atomic",
    "save_figure_atomic",
    "open_safetensors",
    "read_json",
    "damaged_file",
    "reading",
]


def _check_folder(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {path.name}: the folder {folder} does not exist "
            f"(create it first, e.g. os.makedirs({str(folder)!r}))"
        )


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open folders: durability is best effort there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _target(path: Path) -> Path:
    """Where a write to `path` lands: through a symlink (a chain too) to the file it names, as `open(path, "w")`
    would, so replacing the file keeps the link and updates its target instead of turning the link into a copy."""
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if real.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a symlink to the folder {real}; give a file path")
    return real


class StagedWrites:
    """A group of files replaced together: `stage` writes each to a temporary sibling, `commit` moves them
    into place in staging order. Used as a context manager it commits on success and removes every
    temporary file on any exception (KeyboardInterrupt included), leaving the previous files untouched.
    Should a rename itself fail halfway through `commit`, the files already replaced are rolled back
    from hard-link backups (where the file system has hard links)."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    @property
    def targets(self) -> list[Path]:
        """The files staged so far, in commit order."""
        return [p for _, p in self._pending]

    def stage(self, path: str | os.PathLike, write: Callable[[str], None]) -> None:
        """`write(tmp_path)` writes (or moves in) the content of `path` under a temporary name; that file
        is created with the umask mode beforehand and gets the replaced file's mode afterwards."""
        path = _target(Path(path))
        _check_folder(path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        self._pending.append((tmp, path))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, as for open()
        os.close(fd)
        mode = stat.S_IMODE(os.stat(path if path.exists() else tmp).st_mode)
        write(str(tmp))
        with open(tmp, "rb") as f:  # before the chmod: a read-only mode (0444) must not lock us out
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # writers may recreate the file (safetensors makes it 0600)

    def commit(self) -> None:
        done: list[tuple[Path, Path | None, bool]] = []  # (target, hard-link backup, existed before)
        backups: list[Path] = []
        try:
            for tmp, path in self._pending:
                backup, existed = None, path.exists()
                if existed:
                    backup = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.bak")
                    try:
                        os.link(path, backup)
                        backups.append(backup)
                    except OSError:
                        backup = None
                os.replace(tmp, path)
                done.append((path, backup, existed))
        except BaseException:
            for path, backup, existed in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, path)
                    elif not existed:
                        os.remove(path)
                except OSError:
                    pass
            raise
        finally:
            for backup in backups:
                if backup.exists():
                    os.remove(backup)
        for folder in {p.parent for _, p in self._pending}:
            _fsync_dir(folder)
        self._pending = []

    def abort(self) -> None:
        for tmp, _ in self._pending:
            try:
                os.remove(tmp)
            except FileNotFoundError:
                pass
        self._pending = []

    def __enter__(self) -> "StagedWrites":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            finally:
                self.abort()  # temporaries not moved in (a failed rename) are removed
        else:
            self.abort()


def _write_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> Callable[[str], None]:
    return lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)


def _write_text(text: str) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path, metadata: dict[str, str] | None) -> None:
    with StagedWrites() as w:
        w.stage(path, _write_safetensors(tensors, metadata))


def write_text_atomic(text: str, path) -> None:
    with StagedWrites() as w:
        w.stage(path, _write_text(text))


def write_atomic(path, write: Callable[[str], None]) -> None:
    """Any other writer: `write(tmp_path)` fills a unique temporary that then replaces `path` (see `StagedWrites`)."""
    with StagedWrites() as w:
        w.stage(path, write)


def save_figure_atomic(fig, path, **savefig_kwargs) -> None:
    """`fig.savefig(path, ...)` through a unique temporary; the format comes from `path`'s suffix (the temporary's
    own suffix is .tmp), so a failed or interrupted save leaves the previous figure whole."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    write_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs))


# ---------------------------------------------------------------------------------------------- reading
def damaged_file(path, what: str, cause: Any) -> ValueError:
    """The one error for a file that exists but cannot be read as `what` (with its article: "a checkpoint shard")."""
    return ValueError(
        f"{path} is not {what} that can be read: {cause}. The file is corrupt, truncated "
        "(an interrupted copy or download?) or of another kind; re-create or re-download it"
    )


def _readable(p: Path, what: str) -> None:
    """Missing, a folder, or not readable (permissions): three causes, three messages."""
    try:
        p.stat()
    except PermissionError as e:
        raise PermissionError(
            f"{p} cannot be reached ({e.strerror}): a folder on its path is not readable "
            f"(expected {what}); fix the permissions"
        ) from None
    except FileNotFoundError:
        raise FileNotFoundError(f"{p} does not exist (expected {what})") from None
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder, not {what}")
    if not os.access(p, os.R_OK):
        raise PermissionError(
            f"{p} exists but is not readable (mode {stat.S_IMODE(p.stat().st_mode):o}; "
            f"expected {what}); fix its permissions, e.g. chmod u+r"
        )


def open_safetensors(path, what: str):
    """`safe_open(path)` whose errors name the path, `what` it should be and the cause."""
    p = Path(path)
    _readable(p, what)
    try:
        return safe_open(str(p), framework="pt")
    except Exception as e:  # SafetensorError: header too large, incomplete metadata, ...
        raise damaged_file(p, what, f"not a complete safetensors file ({e})") from None


@contextmanager
def reading(path, what: str) -> Iterator[None]:
    """Turns the structural errors of reading a file's content (bad JSON, a missing key, a wrong type)
    into `damaged_file`, so a right-tagged file with a broken body names its path instead of `KeyError: 'x'`."""
    try:
        yield
    except json.JSONDecodeError as e:
        raise damaged_file(path, what, f"invalid JSON ({e})") from None
    except KeyError as e:
        raise damaged_file(path, what, f"missing entry {e}") from None
    except (TypeError, AttributeError, IndexError) as e:
        raise damaged_file(path, what, f"malformed content ({type(e).__name__}: {e})") from None
    except SafetensorError as e:  # e.g. a tensor the metadata names is not in the file
        raise damaged_file(path, what, f"tensor data does not match its metadata ({e})") from None


def read_json(path, what: str) -> Any:
    p = Path(path)
    _readable(p, what)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise damaged_file(p, what, f"not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise damaged_file(p, what, f"invalid JSON ({e})") from None
