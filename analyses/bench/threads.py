"""`mdm-lens bench threads`: what torch's OpenMP threads do to a generation when the cores are busy.

Under oversubscription (more runnable threads than cores) OpenMP worker threads that spin-wait between parallel
regions burn the time slices the other threads need; a generation is thousands of small parallel regions, so it
can slow down many times over. The benchmark times one small repeatable workload (the packaged organism
generating `n_prompts` answers) in a fresh process per variant, because the wait policy is read once, when torch
loads its OpenMP runtime:

* `default`: neither `OMP_WAIT_POLICY` nor `OMP_NUM_THREADS` set, torch's default thread count;
* `passive`: `OMP_WAIT_POLICY=PASSIVE` (idle workers sleep instead of spinning);
* `one_thread`: `torch.set_num_threads(1)` in the worker (no worker threads at all).

Each variant runs on the machine as it is (`ambient`: whatever else runs there; the load average is recorded) and
beside `load` deliberate competitors (`with_competitors`: busy Python loops, one process each), variants
interleaved so drift hits them alike; the median of `repeats` runs is reported, with the slowdown of each time
with competitors against the same variant's ambient time and against `default`'s ambient time. The
competitors are started and stopped by the benchmark itself (terminated in a `finally`)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "default": ({}, False),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, False),
    "one_thread": ({}, True),
}

_WORKER = r"""
import json, sys, time
args = json.loads(sys.argv[1])
import torch
if args["one_thread"]:
    torch.set_num_threads(1)
from mdm_lens import HookedMDM
model = HookedMDM.from_pretrained(args["model"], dtype=torch.float32)
prompts = [f"Write a short note about topic number {i}." for i in range(args["n_prompts"])]
kw = dict(gen_length=args["gen_length"], steps=args["steps"], block_length=args["gen_length"], seed=0)
model.generate(prompts[:1], **kw)  # warm-up: first-call allocations are not what is measured
t0 = time.perf_counter()
model.generate(prompts, **kw)
print(json.dumps({"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}))
"""

_SPIN = "while True:\n    pass\n"


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    return {**env, **extra}


def _run_worker(variant: str, settings: dict) -> dict:
    extra, one = VARIANTS[variant]
    arg = json.dumps({**settings, "one_thread": one})
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, arg], env=_env(extra), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench threads: the {variant} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _competitors(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _measure(load: int, settings: dict, repeats: int, progress) -> dict[str, dict]:
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    threads: dict[str, int] = {}
    procs = _competitors(load)
    try:
        time.sleep(0.5 if load else 0.0)  # let the competitors reach the run queue
        for _ in range(repeats):
            for v in VARIANTS:
                got = _run_worker(v, settings)
                times[v].append(got["seconds"])
                threads[v] = got["threads"]
                progress.update(1)
    finally:
        _stop(procs)
    return {v: {"median_s": statistics.median(t), "runs_s": t, "torch_threads": threads[v]} for v, t in times.items()}


def run_threads_bench(
    model: str | None = None,
    n_prompts: int = 8,
    gen_length: int = 16,
    steps: int = 16,
    load: int = 2,
    repeats: int = 3,
) -> dict:
    """Median seconds per variant on the machine as it is and beside `load` busy processes (module docstring)."""
    from tqdm.auto import tqdm

    for name, value, low in (("n_prompts", n_prompts, 1), ("load", load, 1), ("repeats", repeats, 1)):
        if value < low:
            raise ValueError(f"bench threads: {name}={value} must be >= {low}")
    settings = dict(model=model or "tiny-mdm", n_prompts=n_prompts, gen_length=gen_length, steps=steps)
    with tqdm(total=2 * repeats * len(VARIANTS), desc="bench threads") as bar:
        load_before = [round(x, 2) for x in os.getloadavg()]
        idle = _measure(0, settings, repeats, bar)
        busy = _measure(load, settings, repeats, bar)
    base = idle["default"]["median_s"]
    rows = {
        v: {
            "ambient_s": round(idle[v]["median_s"], 3),
            "with_competitors_s": round(busy[v]["median_s"], 3),
            "ambient_vs_default_ambient": round(idle[v]["median_s"] / base, 3),
            "competitors_vs_ambient": round(busy[v]["median_s"] / idle[v]["median_s"], 2),
            "competitors_vs_default_ambient": round(busy[v]["median_s"] / base, 2),
            "torch_threads": busy[v]["torch_threads"],
        }
        for v in VARIANTS
    }
    return {
        "benchmark": "threads",
        "workload": settings,
        "competitors": load,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_before,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "repeats": repeats,
        "variants": rows,
        "runs": {"ambient": idle, "with_competitors": busy},
    }
