"""Building experiment tasks: from IFEval contrastive pairs (real models) or the organism's corpus."""

from __future__ import annotations

import random
from collections import defaultdict

from .experiment import EvalRecord, Task

SHARED_SINGLE = "ifeval_single_instr_format.jsonl"


def ifeval_tasks(
    path: str,
    n_calib: int = 128,
    n_val: int = 10,
    n_test: int = 64,
    seed: int = 0,
    min_items: int = 4,
    instruction_ids: list[str] | None = None,
) -> list[Task]:
    """One task per instruction id from single-instruction IFEval pairs (prompt with / without it).

    Items are shuffled per id and split test → val → calibration, so the three never overlap; small ids
    get fewer items (the sizes actually used are recorded in the result file)."""
    from .. import ifeval

    by_id: dict[str, list] = defaultdict(list)
    for p in ifeval.load_contrastive_pairs(path):
        if len(p.instruction_id_list) == 1 and p.kwargs is not None:
            by_id[p.instruction_id_list[0]].append(p)
    if instruction_ids:
        unknown = sorted(set(instruction_ids) - set(by_id))
        if unknown:
            raise ValueError(f"no single-instruction prompts for {unknown}; available: {sorted(by_id)}")
    tasks = []
    for iid in sorted(instruction_ids or by_id):
        items = list(by_id[iid])
        if len(items) < min_items:
            continue
        random.Random(f"{seed}:{iid}").shuffle(items)
        nt = min(n_test, max(1, len(items) // 2))
        nv = min(n_val, max(1, (len(items) - nt) // 3))
        test, val, calib = items[:nt], items[nt : nt + nv], items[nt + nv : nt + nv + n_calib]
        if not calib:
            continue
        rec = lambda p: EvalRecord(p.prompt, list(p.instruction_id_list), [dict(k) for k in p.kwargs], p.key)  # noqa: E731
        tasks.append(
            Task(
                iid,
                [p.prompt_without_instruction for p in calib],
                [p.prompt for p in calib],
                [rec(p) for p in val],
                [rec(p) for p in test],
            )
        )
    if not tasks:
        raise ValueError(f"no instruction id in {path} has at least {min_items} single-instruction prompts")
    return tasks


def organism_tasks(kinds, n_calib: int, n_val: int, n_test: int, seed: int = 0, corpus=None) -> list[Task]:
    """Tasks on an organism's held-out requests. `corpus` is the corpus module that trained the model
    (`analyses.studies.organism.corpus_for(model.config)`; default: v1, the packaged tiny-if's)."""
    from analyses.studies.organism import corpus_for

    corpus = corpus or corpus_for(None)
    calibration_pairs, eval_items = corpus.calibration_pairs, corpus.eval_items
    tasks = []
    for kind in kinds:
        src, tgt = calibration_pairs(kind, n_calib, seed)
        rec = lambda e, i: EvalRecord(e.prompt, list(e.instruction_id_list), list(e.kwargs), i)  # noqa: E731
        val = [rec(e, i) for i, e in enumerate(eval_items(kind, n_val, "val", seed))]
        test = [rec(e, i) for i, e in enumerate(eval_items(kind, n_test, "test", seed))]
        tasks.append(Task(kind, src, tgt, val, test))
    return tasks
