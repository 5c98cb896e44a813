"""Zero-touch reads of safetensors files: every tensor is a view of one private memory map of the file.

Why not `safe_open(...).get_tensor`: measured on a 16B-shaped checkpoint (14,813 tensors), safetensors 0.8's torch
path faults in every page of each tensor it returns (RSS of file pages grew by the bytes read, 94 s for 32 GB
from a cold page cache), although the tensors are not used yet. Here the file is mapped once (`mmap.ACCESS_COPY`,
i.e. MAP_PRIVATE) and `torch.frombuffer` makes views: loading reads only the header, pages come in when a forward
first touches them, and only the experts a MoE forward routes to are ever read. MAP_PRIVATE also means an in-place
edit of a weight (a folded steering map) copies that page into private memory and never writes the checkpoint.

The header is checked as safetensors does (length, JSON object, known dtype, shape x itemsize = byte span, spans
inside the file); a damaged file raises `safefile.damaged_file` naming the path.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Any

import torch

from .safefile import damaged_file

__all__ = ["MappedSafetensors", "SF_DTYPES"]

SF_DTYPES: dict[str, torch.dtype] = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_MAX_HEADER = 100 * 2**20  # the limit safetensors itself enforces


class MappedSafetensors:
    """`with MappedSafetensors(path, what) as f: f.get_tensor(key)` -> a CPU tensor viewing the file's mapping.

    The mapping lives as long as any tensor made from it (torch.frombuffer keeps a reference), so closing the
    reader never invalidates a loaded weight."""

    def __init__(self, path: str | Path, what: str):
        self.path, self.what = Path(path), what
        with open(self.path, "rb") as fh:
            size = self.path.stat().st_size
            n = struct.unpack("<Q", fh.read(8))[0] if size >= 8 else -1
            if not 0 < n <= min(_MAX_HEADER, size - 8):
                raise damaged_file(self.path, what, f"header length {n} does not fit a {size}-byte file")
            try:
                header = json.loads(fh.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise damaged_file(self.path, what, f"the header is not JSON ({e})") from None
            if not isinstance(header, dict):
                raise damaged_file(self.path, what, "the header is not a JSON object")
            self.metadata = header.pop("__metadata__", None) or {}
            self.start = 8 + n
            self.entries = {k: self._entry(k, v, size - self.start) for k, v in header.items()}
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY) if size > self.start else None

    def _entry(self, key: str, info: Any, data_bytes: int) -> tuple[torch.dtype, tuple[int, ...], int, int]:
        try:
            dtype = SF_DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise damaged_file(self.path, self.what, f"tensor {key!r} has a malformed header entry ({e!r})") from None
        numel = 1
        for s in shape:
            numel *= s
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= data_bytes or end - begin != numel * dtype.itemsize:
            raise damaged_file(
                self.path, self.what, f"tensor {key!r}: shape {list(shape)} {dtype} does not fit bytes [{begin}, {end})"
            )
        return dtype, shape, begin, end

    def keys(self) -> list[str]:
        return list(self.entries)

    def dtype_of(self, key: str) -> torch.dtype:
        return self.entries[key][0]

    def get_tensor(self, key: str) -> torch.Tensor:
        dtype, shape, begin, end = self.entries[key]
        if end == begin or self._map is None:
            return torch.empty(shape, dtype=dtype)
        flat = torch.frombuffer(
            self._map, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=self.start + begin
        )
        return flat.view(shape)

    def __enter__(self) -> "MappedSafetensors":
        return self

    def __exit__(self, *exc: object) -> None:
        self._map = None  # tensors already made keep the mapping alive; it unmaps with the last of them
