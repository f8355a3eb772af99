"""The `tom-relay` command. The relay server itself arrives with its own issue (spec §8);
until then the command only reports its version and says so."""

from __future__ import annotations

import sys

from tomproto.buildinfo import version_line

__all__ = ["main"]


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        print(version_line("tom-relay"))
        sys.exit(0)
    print("tom-relay: the relay server is not built yet; only --version works", file=sys.stderr)
    sys.exit(2)
