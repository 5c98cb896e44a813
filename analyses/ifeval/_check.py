"""Per-response verdicts, strict and loose, with the official harness's rules."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ._registry import get_spec


def response_variants(response: str) -> list[str]:
    """The eight responses the official *loose* mode tries, in its order.

    The original; without '*'; without the first line, the last line, or both
    (stripped); and those three again without '*'.
    """
    lines = response.split("\n")
    drop_first = "\n".join(lines[1:]).strip()
    drop_last = "\n".join(lines[:-1]).strip()
    drop_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        drop_first,
        drop_last,
        drop_both,
        drop_first.replace("*", ""),
        drop_last.replace("*", ""),
        drop_both.replace("*", ""),
    ]


def bind_instructions(
    instruction_id_list: Sequence[str], kwargs: Sequence[Mapping[str, Any] | None] | None
) -> list[Callable[[str], bool]]:
    """Validate ids and kwargs up front and return one ``response -> bool`` per instruction."""
    if isinstance(instruction_id_list, str) or not isinstance(instruction_id_list, Sequence):
        raise ValueError(f"instruction_id_list must be a list of ids, got {instruction_id_list!r}")
    ids = list(instruction_id_list)
    if kwargs is None:
        kwargs = [{} for _ in ids]
    if isinstance(kwargs, Mapping) or not isinstance(kwargs, Sequence) or len(kwargs) != len(ids):
        raise ValueError(f"kwargs must be a list with one dict per instruction ({len(ids)}), got {kwargs!r}")
    bound = []
    for instruction_id, kw in zip(ids, kwargs):
        if kw is not None and not isinstance(kw, Mapping):
            raise ValueError(f"kwargs for {instruction_id!r} must be a dict, got {kw!r}")
        bound.append(get_spec(instruction_id).bind(kw))
    return bound


def _passes(test: Callable[[str], bool], candidate: str) -> bool:
    # Whitespace-only candidates fail without being checked, as officially.
    return bool(candidate.strip()) and test(candidate)


def check(
    response: Any,
    instruction_id_list: Sequence[str],
    kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    prompt: str | None = None,
    loose: bool = False,
) -> list[bool]:
    """One verdict per instruction for ``response``.

    ``kwargs`` holds one dict per instruction (falsy values such as the None
    padding of the hub dataset are dropped, as the official harness does).
    ``prompt`` is accepted for parity with the harness, which offers it to
    checkers taking a ``prompt`` argument; none of the 25 IFEval checkers do.
    ``loose=True`` passes an instruction if any of ``response_variants`` does.
    Empty or non-string responses fail every instruction; unknown ids or bad
    kwargs raise ValueError.
    """
    del prompt  # see docstring
    tests = bind_instructions(instruction_id_list, kwargs)
    if not isinstance(response, str) or not response.strip():
        return [False] * len(tests)
    candidates = response_variants(response) if loose else [response]
    return [any(_passes(test, c) for c in candidates) for test in tests]
