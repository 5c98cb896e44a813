"""The `mdm-lens` entry's OpenMP wait policy, chosen before torch loads its OpenMP runtime (it reads the
variable once, at load).

Why: a generation is thousands of small parallel regions. With OpenMP's default policy torch's idle worker
threads spin between regions; when the cores are busy with other processes the spinning threads take the time
slices the working ones need. `mdm-lens bench threads` (docs/bench/threads.json, 2 CPU cores, load average
about 9 from other users, tiny-mdm answering 4 prompts) measured the default up to ten times slower than
`OMP_WAIT_POLICY=PASSIVE`, which was also the fastest variant beside two deliberate busy processes, with no
loss against the default when the generation had the cores. So the entry sets PASSIVE unless the user has
set the variable (their value always wins)."""

from __future__ import annotations

import os
import sys


def prefer_passive_wait() -> str | None:
    """Set `OMP_WAIT_POLICY=PASSIVE` when the user has not set it and torch is not loaded yet; returns the
    policy now in the environment (None when unset and too late to choose)."""
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return os.environ.get("OMP_WAIT_POLICY")
