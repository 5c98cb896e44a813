"""Reference vs Fast-dLLM cached sampler on an organism folder: identical texts and seconds per generation.

    python scripts/organism_fast_agreement.py /work/scratch-organism/smol-r3 2   # folder, torch threads

32 val prompts (8 harmful, 8 harmless, 8 unprompted reviews, 2 for each of the first 4 demo constraints), the
checkpoint's sampler, greedy. Run 3 (2026-12-08, 2 idle threads): docs/organism/run3-fast-agreement.json.
"""

import json
import sys
import time

import torch

from analyses.studies.organism import behaviours_for, corpus_for
from mdm_lens import HookedMDM

RUNS = {
    "reference": {},
    "fast_prefix": {"sampler": "fast", "cache": "prefix"},
    "fast_dual": {"sampler": "fast", "cache": "dual"},
}

if __name__ == "__main__":
    path, threads = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    model = HookedMDM.from_pretrained(path, dtype=torch.float32)
    beh, corpus = behaviours_for(model.config), corpus_for(model.config)
    prompts = beh.refusal_prompts(True, 8, "val", 0) + beh.refusal_prompts(False, 8, "val", 0)
    prompts += beh.sentiment_prompts(None, 8, "val", 0)
    prompts += [e.prompt for k in corpus.DEMO_KINDS[:4] for e in corpus.eval_items(k, 2, "val", 0)]
    out: dict = {"n": len(prompts), "threads": threads, "sampler": model.sampler_settings()}
    texts = {}
    for name, kw in RUNS.items():
        t = time.perf_counter()
        texts[name] = model.generate(prompts, **kw).texts
        out[name] = {"seconds_per_generation": round((time.perf_counter() - t) / len(prompts), 3)}
    for name in ("fast_prefix", "fast_dual"):
        same = sum(a == b for a, b in zip(texts["reference"], texts[name]))
        out[name]["identical_texts"] = f"{same}/{len(prompts)}"
    out["samples"] = [(p, texts["reference"][i], texts["fast_dual"][i]) for i, p in enumerate(prompts[:6])]
    print(json.dumps(out, indent=1, default=str))
