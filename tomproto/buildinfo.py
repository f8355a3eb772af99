"""What `--version` says: the tool version and the platform it runs on."""

from __future__ import annotations

import platform
import sys

from tomproto import __version__

__all__ = ["version_line"]


def version_line(program: str) -> str:
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"{program} {__version__} (python {python}, {platform.system().lower()} {platform.machine()})"
