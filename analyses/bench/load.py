"""`mdm-lens bench load`: what loading a hub-layout checkpoint costs in memory and time.

The claim under test: `HookedMDM.from_pretrained(folder, dtype=torch.bfloat16)` on a bf16 safetensors checkpoint
peaks at no more than 1.0x the weight bytes. The load assigns safetensors' tensors to a meta-built module; those
tensors are views of a private file mapping, so nothing is copied unless a cast, `.contiguous()` or a tie does it.

Memory is read from `/proc/self/status` of a *fresh* child process (so the parent's allocations do not count),
sampled every 2 ms during the load: `RssAnon` (private memory: copies, Python objects, torch's allocator) and
`RssFile` (checkpoint pages mapped and resident; the kernel can drop them under pressure and re-read them, so they
are cache, not a copy) separately, plus `VmHWM` (the kernel's peak of both). The honest figure for "does the load
copy" is the anonymous growth; the total peak counts what the forward then touches. All figures are growth over
the child's baseline after `import torch, mdm_lens` (that baseline is reported too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def proc_status() -> dict[str, int]:
    """Memory fields of /proc/self/status in bytes (Linux); {} where there is no /proc."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in _FIELDS:
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        return {}
    return out


def mapped_file_ranges(suffix: str = ".safetensors") -> list[tuple[int, int]]:
    """[start, stop) address ranges of this process's mappings of files ending in `suffix` (/proc/self/maps)."""
    ranges = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].endswith(suffix):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    ranges.append((lo, hi))
    except OSError:
        return []
    return ranges


def count_mapped(tensors: list[Any]) -> int:
    """How many CPU tensors point into a mapped checkpoint file (a view of the mmap, not a copy)."""
    ranges = mapped_file_ranges()
    return sum(
        t.device.type == "cpu" and any(lo <= t.data_ptr() < hi for lo, hi in ranges) for t in tensors if t.numel()
    )


class PeakSampler:
    """Background thread keeping the peak of each /proc/self/status memory field while a block runs."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for k, v in proc_status().items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for k, v in proc_status().items():
            self.peak[k] = max(self.peak.get(k, 0), v)


def _child(folder: str, dtype: str, tokens: int, device_map: str | None) -> dict[str, Any]:
    """Runs in the fresh process: load, one forward on `tokens` tokens, the memory figures."""
    import torch

    from mdm_lens import HookedMDM
    from mdm_lens.loading import parse_dtype

    torch.set_grad_enabled(False)
    base = proc_status()
    t0 = time.perf_counter()
    with PeakSampler() as load_peak:
        model = HookedMDM.from_pretrained(folder, dtype=parse_dtype(dtype), device_map=device_map)
    load_s = time.perf_counter() - t0
    after_load = proc_status()
    params = list(model.model.parameters())
    mmap_backed = count_mapped(params)
    vocab = int(model.cfg.d_vocab)
    ids = torch.randint(0, min(vocab, 1000), (1, tokens), generator=torch.Generator().manual_seed(0))
    t1 = time.perf_counter()
    with PeakSampler() as fwd_peak:
        logits = model(ids.to(model.input_device))
    fwd_s = time.perf_counter() - t1
    return {
        "load_seconds": load_s,
        "forward_seconds": fwd_s,
        "forward_tokens": tokens,
        "logits_finite": bool(torch.isfinite(logits.float()).all()),
        "params": len(params),
        "params_mmap_backed": mmap_backed,
        "param_dtypes": sorted({str(p.dtype) for p in params}),
        "baseline": base,
        "after_load": after_load,
        "peak_load": load_peak.peak,
        "peak_forward": fwd_peak.peak,
        "after_forward": proc_status(),
    }


def measure_load(
    folder: str | os.PathLike, dtype: str = "bfloat16", tokens: int = 8, device_map: str | None = None
) -> dict[str, Any]:
    """Load `folder` in a fresh Python process and return the figures (ratios are over the weight bytes)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight = int(json.loads(index.read_text())["metadata"]["total_size"])
    else:
        weight = (folder / "model.safetensors").stat().st_size
    code = (
        "import json, sys; from analyses.bench.load import _child; "
        f"print('@@' + json.dumps(_child({str(folder)!r}, {dtype!r}, {tokens}, {device_map!r})))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the load child failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    raw = json.loads(next(line[2:] for line in proc.stdout.splitlines() if line.startswith("@@")))
    return summarize(raw, weight)


def summarize(raw: dict[str, Any], weight: int) -> dict[str, Any]:
    """Growth over the child's baseline, as bytes and as a ratio of the weight bytes."""
    base = raw["baseline"]

    def grow(snap: dict[str, int], key: str) -> int:
        return snap.get(key, 0) - base.get(key, 0)

    load, fwd = raw["peak_load"], raw["peak_forward"]
    return {
        "weight_bytes": weight,
        "weight_gib": weight / 2**30,
        "load_seconds": raw["load_seconds"],
        "forward_seconds": raw["forward_seconds"],
        "peak_rss_load_ratio": grow(load, "VmHWM") / weight,
        "peak_anon_load_ratio": grow(load, "RssAnon") / weight,
        "peak_file_load_ratio": grow(load, "RssFile") / weight,
        "peak_rss_forward_ratio": grow(fwd, "VmHWM") / weight,
        "peak_anon_forward_ratio": grow(fwd, "RssAnon") / weight,
        "peak_file_forward_ratio": grow(fwd, "RssFile") / weight,
        "within_1x": grow(fwd, "VmHWM") <= weight,
        "bytes": {
            "baseline_rss": base.get("VmRSS", 0),
            "peak_anon_load": grow(load, "RssAnon"),
            "peak_file_load": grow(load, "RssFile"),
            "peak_rss_load": grow(load, "VmHWM"),
            "peak_anon_forward": grow(fwd, "RssAnon"),
            "peak_file_forward": grow(fwd, "RssFile"),
            "peak_rss_forward": grow(fwd, "VmHWM"),
        },
        **{k: raw[k] for k in ("params", "params_mmap_backed", "param_dtypes", "logits_finite", "forward_tokens")},
    }


def run_load_bench(
    family: str = "llada", shape: str = "mid", folder: str | None = None, tokens: int = 8, keep: bool = False
) -> dict[str, Any]:
    """Write a random-weight bf16 checkpoint of a known shape (bigckpt.SHAPES) to `folder` (default: a temporary
    folder, deleted afterwards unless keep), then measure its load. Checks free disk space first."""
    import shutil

    import torch

    from .bigckpt import SHAPES, hub_layout, weight_bytes, write_random_checkpoint

    if (family, shape) not in SHAPES:
        raise ValueError(f"unknown shape {family}/{shape}; known: {sorted(f'{f}/{s}' for f, s in SHAPES)}")
    config = SHAPES[(family, shape)]
    need = weight_bytes(hub_layout(config), torch.bfloat16)
    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix=f"mdm-lens-load-{family}-{shape}-"))
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < need * 1.05:
        raise OSError(
            f"{root} has {free / 2**30:.1f} GiB free; the {family}/{shape} checkpoint needs {need / 2**30:.1f}"
        )
    try:
        t0 = time.perf_counter()
        written = write_random_checkpoint(root, config)
        write_s = time.perf_counter() - t0
        result = measure_load(root, tokens=tokens)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return {"family": family, "shape": shape, "write_seconds": write_s, "n_shards": written["n_shards"], **result}


def run_load_cli(model: str | None) -> dict[str, Any]:
    """`mdm-lens bench load [--model X]`: X a checkpoint folder (measured as it is) or a shape `family/shape`
    written to a temporary folder first (default llada/mid, 0.4 GB; llada/8b and llada2/mini need 16 / 32 GB)."""
    if model and Path(model).is_dir():
        return {"benchmark": "load", "folder": model, **measure_load(model)}
    family, _, shape = (model or "llada/mid").partition("/")
    return {"benchmark": "load", **run_load_bench(family, shape)}
