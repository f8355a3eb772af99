"""Helpers shared by the command modules: errors to stderr with the right exit code."""

from __future__ import annotations

from typing import NoReturn

import typer

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_UNREACHABLE", "EXIT_OUTPUT_FAILED", "EXIT_CODES_HELP",
    "SERVER_EXIT_CODES_HELP", "fail", "warn",
]  # fmt: skip

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_OUTPUT_FAILED = 4

# Shown at the end of `--help` (typer's epilog; \b keeps the lines as they are).
EXIT_CODES_HELP = (
    "\b\nExit codes: 0 done; 1 --max-loss exceeded; 2 usage or configuration error; 3 the peer was "
    "never reached, or it refused the run (a refusal, a responder too old for the hello, a missing capability: "
    "nothing was measured); 4 the archive could not be written (full disk, I/O error); 129, 130, 143 stopped "
    "by SIGHUP, SIGINT, SIGTERM (the summary is still written)."
)

SERVER_EXIT_CODES_HELP = (
    "\b\nExit codes: 0 stopped (SIGINT, SIGTERM or SIGHUP; the final counters are printed); 2 usage or "
    "configuration error (an address in use is named); 3 the relay given with --relay never answered."
)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (2, usage/configuration, by default)."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def warn(message: str) -> None:
    """Print `warning: message` on stderr and go on."""
    typer.echo(f"warning: {message}", err=True)
