"""scripts/gpu_bench.sh's suite: covers every `mdm-lens bench` benchmark, refuses to pretend without CUDA."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from analyses.bench.suite import _ARGS, HOST_ONLY, run_suite
from analyses.cli.commands import BENCHMARKS

ROOT = Path(__file__).resolve().parents[1]


def test_suite_runs_every_cli_benchmark():
    # a new `mdm-lens bench` must join the GPU run, or say why not in HOST_ONLY
    assert list(_ARGS) == [b for b in BENCHMARKS if b not in HOST_ONLY]


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="size='huge'"):
        run_suite("cpu", "huge")
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['nope'\]"):
        run_suite("cpu", "tiny", only=["nope"])
    with pytest.raises(ValueError, match="budget_s=0"):
        run_suite("cpu", "tiny", budget_s=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="sees no CUDA device.*--device cpu"):
        run_suite("cuda", "full")
    out = tmp_path / "bench.json"
    proc = subprocess.run(["bash", str(ROOT / "scripts/gpu_bench.sh"), str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and not out.exists()
