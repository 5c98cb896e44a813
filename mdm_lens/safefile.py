"""Atomic safetensors writes: a file is either the old one or the complete new one, never half-written."""
from __future__ import annotations

import os
import tempfile

import torch
from safetensors.torch import save_file


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path, metadata: dict[str, str]) -> None:
    folder = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
