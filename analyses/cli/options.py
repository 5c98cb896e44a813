"""Old option spellings kept for one release: they still work, and say what replaced them.

`mdm-lens` names a site role `--role` / `--roles` and an organism or IFEval constraint `--instruction-id` in
every command; the earlier `--hook-point(s)` and `--kind` are aliases that print a deprecation message to
stderr and then act as the new option. Stdlib only, like the rest of `--help`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence


class _Deprecated(argparse.Action):
    """Store (or append) like the new option, after one line on stderr naming it."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, new: str = "", append: bool = False, **kwargs: Any
    ) -> None:
        self.new, self.append = new, append
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: {option_string} is deprecated and will be removed in the next release; use {self.new}",
            file=sys.stderr,
        )
        if self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def deprecated_alias(
    p: argparse.ArgumentParser, old: str, new: str, dest: str, *, append: bool = False, **kwargs: Any
) -> None:
    """Register `old` as a deprecated spelling of the option `new` (same `dest`, same `nargs` / `choices`)."""
    # default None never shadows the new option's: argparse sets a dest's default from its first action only
    p.add_argument(
        old,
        dest=dest,
        action=_Deprecated,
        new=new,
        append=append,
        default=None,
        help=f"deprecated spelling of {new}, kept for one release (default: that of {new})",
        **kwargs,
    )
