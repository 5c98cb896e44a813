"""Every `mdm-lens bench` benchmark in one run, one JSON (`scripts/gpu_bench.sh` calls this).

Each benchmark runs as its own `mdm-lens bench <name> --json ...` process (a crash or a hang in one does not take
the others down, and each starts with a clean CUDA context), under a share of the total time budget; what did not
fit is recorded as skipped, never silently dropped. The JSON holds, per benchmark, its own output, the command,
the wall time and the exit status, plus the device name, torch / CUDA versions and the total wall time.

Sizes: `full` (the GPU run: benchmarks' GPU settings, bf16, the mid-size models) and `tiny` (a CPU dry run that
proves the wiring in about a minute: short canvases, one repeat). Benchmarks that take `--device` (fast, sae) run
on the chosen device; the others time CPU-side overheads by design and say so in their own JSON.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Arguments per benchmark: (full, tiny). `{device}` is filled in; fast/sae are the ones that move to the device.
# `threads` stays out: it measures the host CPU's OpenMP wait policy beside busy processes, nothing a GPU changes
HOST_ONLY = ("threads",)
_T = ["--model", "tiny-mdm"]  # the packaged tiny organism: the dry run checks wiring, not speed
_ARGS: dict[str, tuple[list[str], list[str]]] = {
    "sampler": (["--repeats", "3"], [*_T, "--gen-length", "8", "--steps", "4", "--prompt-len", "4", "--repeats", "1"]),
    "steer": (["--repeats", "3"], [*_T, "--gen-length", "8", "--steps", "4", "--prompt-len", "4", "--repeats", "1"]),
    "fit": ([], []),
    "fast": (
        ["--device", "{device}", "--dtype", "bfloat16", "--repeats", "3"],
        [
            *_T,
            "--device",
            "{device}",
            "--gen-length",
            "16",
            "--block-length",
            "8",
            "--prompt-len",
            "8",
            "--repeats",
            "1",
        ],
    ),
    "attn": (["--repeats", "3"], [*_T, "--prompt-len", "32", "--repeats", "1"]),
    "sae": (
        ["--device", "{device}", "--repeats", "3"],
        [*_T, "--device", "{device}", "--gen-length", "8", "--steps", "4", "--prompt-len", "4", "--repeats", "1"],
    ),
    "view": ([], [*_T, "--gen-length", "16", "--steps", "16"]),
    "load": ([], []),
}


_ENTRY = "import sys; from analyses.cli.commands import main; sys.exit(main(sys.argv[1:]))"


def device_info(device: str) -> dict[str, Any]:
    """Name of the device the run is for, and the versions that shape its numbers."""
    import torch

    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r} but torch {torch.__version__} sees no CUDA device "
                f"(torch.version.cuda={torch.version.cuda}); run on a GPU machine, or pass --device cpu for a dry run"
            )
        idx = torch.device(device).index or 0
        info.update(
            device_name=torch.cuda.get_device_name(idx), cuda=torch.version.cuda, gpus=torch.cuda.device_count()
        )
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def _run_one(name: str, args: list[str], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-c", _ENTRY, "bench", name, *args, "--json", str(out)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {
                "status": "timeout",
                "seconds": time.perf_counter() - t0,
                "command": ["mdm-lens", *cmd[3:]],
                "limit_s": timeout,
            }
        row: dict[str, Any] = {
            "seconds": time.perf_counter() - t0,
            "command": ["mdm-lens", *cmd[3:]],
            "exit": proc.returncode,
        }
        if proc.returncode == 0 and out.is_file():
            row.update(status="ok", result=json.loads(out.read_text()))
        else:
            row.update(status="error", stderr_tail=proc.stderr[-3000:])
    return row


def run_suite(
    device: str = "cuda", size: str = "full", budget_s: float = 480.0, only: list[str] | None = None
) -> dict[str, Any]:
    """Run the benchmarks in order within `budget_s` seconds in all; returns the combined JSON-ready dict."""
    if size not in ("full", "tiny"):
        raise ValueError(f"size={size!r}: use 'full' (the GPU run) or 'tiny' (a quick dry run)")
    if budget_s <= 0:
        raise ValueError(f"budget_s={budget_s}: give the total time in seconds (> 0), e.g. 480 for 8 minutes")
    names = list(_ARGS) if only is None else only
    unknown = [n for n in names if n not in _ARGS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {list(_ARGS)}")
    report: dict[str, Any] = {**device_info(device), "size": size, "budget_s": budget_s, "benches": {}}
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        left = budget_s - (time.perf_counter() - t0)
        if left < 5:
            report["benches"][name] = {"status": "skipped", "reason": f"the {budget_s:.0f} s budget was spent"}
            continue
        args = [a.format(device=device) for a in _ARGS[name][0 if size == "full" else 1]]
        print(f"[{i + 1}/{len(names)}] mdm-lens bench {name} {' '.join(args)}", file=sys.stderr, flush=True)
        share = max(2.5 * left / (len(names) - i), 30.0)  # one hang cannot eat the others' time
        report["benches"][name] = _run_one(name, args, timeout=min(left, share))
    report["wall_seconds"] = time.perf_counter() - t0
    report["ok"] = all(b["status"] == "ok" for b in report["benches"].values())
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m analyses.bench.suite", description=__doc__)
    p.add_argument("--device", default="cuda", help="cuda (default; fails without CUDA), cuda:N or cpu (dry run)")
    p.add_argument("--size", choices=("full", "tiny"), default=None, help="default: full on cuda, tiny on cpu")
    p.add_argument("--budget", type=float, default=480.0, help="total seconds for all benchmarks (default 480)")
    p.add_argument("--only", nargs="+", default=None, help=f"a subset of {list(_ARGS)}")
    p.add_argument("--out", required=True, help="the combined JSON file to write")
    args = p.parse_args(argv)
    size = args.size or ("full" if args.device.startswith("cuda") else "tiny")
    try:
        report = run_suite(args.device, size, args.budget, args.only)
    except (RuntimeError, ValueError) as e:
        print(f"gpu_bench: {e}", file=sys.stderr)
        return 2
    from mdm_lens.safefile import write_text_atomic

    write_text_atomic(json.dumps(report, indent=2) + "\n", args.out)
    for name, row in report["benches"].items():
        print(f"{name:8s} {row['status']:8s} {row.get('seconds', 0):7.1f} s", file=sys.stderr)
    print(f"total {report['wall_seconds']:.1f} s -> {args.out}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
