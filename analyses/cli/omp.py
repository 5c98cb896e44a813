"""The `mdm-lens` entry's OpenMP wait policy, chosen before torch loads its OpenMP runtime (it reads the
variable once, at load).

Why: a generation is thousands of small parallel regions. With OpenMP's default policy torch's idle worker
threads spin between regions; when the cores are busy with other processes the spinning threads take the time
slices the working ones need. `mdm-lens bench threads` (docs/bench/threads.json: 2 CPU cores at load average
about 10 from other users, tiny-mdm answering 4 prompts) measured 38.1 s with the default policy, 1.8 s with
`OMP_WAIT_POLICY=PASSIVE` and 2.2 s with one thread; beside two more busy processes 90.7 s, 6.5 s and 7.1 s.
PASSIVE keeps torch's thread count (both cores when they are free) and was the fastest in both settings, so the
entry sets it unless the user has set the variable (their value always wins). An idle machine was not available
to measure; there idle threads have nothing to steal from, and the README's demo time was measured before this
choice."""

from __future__ import annotations

import os
import sys


def prefer_passive_wait() -> str | None:
    """Set `OMP_WAIT_POLICY=PASSIVE` when the user has not set it and torch is not loaded yet; returns the
    policy now in the environment (None when unset and too late to choose)."""
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return os.environ.get("OMP_WAIT_POLICY")
