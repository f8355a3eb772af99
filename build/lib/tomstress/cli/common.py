"""Helpers shared by the command modules: errors to stderr with the right exit code."""

from __future__ import annotations

from typing import NoReturn

import typer

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_UNREACHABLE", "fail"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (2, usage/configuration, by default)."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)
