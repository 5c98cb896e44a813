"""Batch IFEval scoring: the four official accuracies plus per-instruction breakdowns.

Prompt-level accuracy is the fraction of prompts whose instructions all pass;
instruction-level accuracy pools every instruction of every prompt (lm-eval's
``agg_inst_level_acc``). The breakdowns by instruction id and by category (the
id's prefix) are what google-research's report prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ._check import bind_instructions, response_variants


@dataclass
class InstructionStats:
    """How often one instruction id (or category) was followed."""

    count: int = 0
    strict_passed: int = 0
    loose_passed: int = 0

    @property
    def strict(self) -> float:
        return self.strict_passed / self.count if self.count else float("nan")

    @property
    def loose(self) -> float:
        return self.loose_passed / self.count if self.count else float("nan")


@dataclass
class IFEvalResult:
    """Accuracies and per-prompt verdicts of one evaluation run (loose fields None if not computed)."""

    prompt_level_strict: float
    inst_level_strict: float
    prompt_level_loose: float | None
    inst_level_loose: float | None
    num_prompts: int
    num_instructions: int
    per_instruction: dict[str, InstructionStats] = field(default_factory=dict)
    per_category: dict[str, InstructionStats] = field(default_factory=dict)
    per_prompt: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The accuracies under lm-eval's metric names."""
        out = {"prompt_level_strict_acc": self.prompt_level_strict, "inst_level_strict_acc": self.inst_level_strict}
        if self.prompt_level_loose is not None:
            out["prompt_level_loose_acc"] = self.prompt_level_loose
            out["inst_level_loose_acc"] = self.inst_level_loose
        return out

    def breakdown(self, by: str = "instruction") -> dict[str, dict[str, float]]:
        """``{id or category: {count, strict, loose}}`` as plain numbers."""
        table = self.per_instruction if by == "instruction" else self.per_category
        has_loose = self.prompt_level_loose is not None
        return {
            name: {"count": s.count, "strict": s.strict, **({"loose": s.loose} if has_loose else {})}
            for name, s in sorted(table.items())
        }


def _verdicts(tests, response: Any, loose: bool) -> tuple[list[bool], list[bool] | None]:
    if not isinstance(response, str) or not response.strip():
        fails = [False] * len(tests)
        return fails, (list(fails) if loose else None)
    strict = [test(response) for test in tests]
    if not loose:
        return strict, None
    variants = [v for v in response_variants(response)[1:] if v.strip()]
    loose_v = [s or any(test(v) for v in variants) for s, test in zip(strict, tests)]
    return strict, loose_v


def _align(records: Sequence[Mapping[str, Any]], responses) -> list[Any]:
    if isinstance(responses, Mapping):
        try:
            return [responses[r["prompt"]] for r in records]
        except KeyError as exc:
            raise ValueError(f"no response for prompt {exc.args[0]!r}") from exc
    responses = list(responses)
    if len(responses) != len(records):
        raise ValueError(f"{len(records)} records but {len(responses)} responses")
    return responses


def evaluate(
    records: Iterable[Mapping[str, Any]],
    responses: Sequence[Any] | Mapping[str, Any],
    loose: bool = True,
) -> IFEvalResult:
    """Score ``responses`` against IFEval ``records`` (dicts as ``load_prompts`` returns).

    ``responses`` is aligned with ``records`` or maps each prompt to its
    response. With ``loose=False`` the loose accuracies are skipped (None).
    """
    records = list(records)
    if not records:
        raise ValueError("evaluate() needs at least one record")
    responses = _align(records, responses)
    per_id: dict[str, InstructionStats] = {}
    per_cat: dict[str, InstructionStats] = {}
    per_prompt = []
    prompt_strict = prompt_loose = inst_total = inst_strict = inst_loose = 0
    for record, response in zip(records, responses):
        ids = list(record["instruction_id_list"])
        tests = bind_instructions(ids, record.get("kwargs"))
        strict, loose_v = _verdicts(tests, response, loose)
        prompt_strict += all(strict)
        inst_total += len(ids)
        inst_strict += sum(strict)
        if loose_v is not None:
            prompt_loose += all(loose_v)
            inst_loose += sum(loose_v)
        for i, instruction_id in enumerate(ids):
            for table, name in ((per_id, instruction_id), (per_cat, instruction_id.split(":")[0])):
                stats = table.setdefault(name, InstructionStats())
                stats.count += 1
                stats.strict_passed += strict[i]
                stats.loose_passed += bool(loose_v and loose_v[i])
        per_prompt.append(
            {
                "key": record.get("key"),
                "prompt": record.get("prompt"),
                "instruction_id_list": ids,
                "strict": strict,
                "loose": loose_v,
            }
        )
    n = len(records)
    inst_den = inst_total or float("nan")
    return IFEvalResult(
        prompt_level_strict=prompt_strict / n,
        inst_level_strict=inst_strict / inst_den,
        prompt_level_loose=prompt_loose / n if loose else None,
        inst_level_loose=inst_loose / inst_den if loose else None,
        num_prompts=n,
        num_instructions=inst_total,
        per_instruction=per_id,
        per_category=per_cat,
        per_prompt=per_prompt,
    )
