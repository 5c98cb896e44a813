"""The demo's refusal section (SMOL size, with the induction arm) on an exported organism folder.

    OMP_NUM_THREADS=1 python scripts/organism_refusal_section.py /work/scratch-organism/smol-r3 OUT

Writes OUT/refusal/ (every generation, config) and OUT/refusal_sweep.png; prints the section's markdown
(run 3: docs/organism/run3-refusal.md, 16.8 min on one thread while another job shared the 2 cores).
"""

import json
import sys
import time

import torch

from analyses.studies.refusal_study import demo_section
from mdm_lens import HookedMDM

if __name__ == "__main__":
    path, out = sys.argv[1], sys.argv[2]
    t = time.time()
    model = HookedMDM.from_pretrained(path, dtype=torch.float32)
    section = demo_section(model, out, "smol-mdm (run 3)", seed=0, progress=True)
    print("\n".join(section.markdown))
    print(json.dumps({"seconds": round(time.time() - t, 1), "threads": torch.get_num_threads()}))
