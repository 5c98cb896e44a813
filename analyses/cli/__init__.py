"""The `mdm-lens` console entry. Importing this package (and `--help`) must stay torch-free: every subcommand
imports what it needs when it runs."""

from .commands import main

__all__ = ["main"]
