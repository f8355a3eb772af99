"""What `--version` says, and what archives and metrics record about the build.

A frozen binary carries `tom_build_info.json` (commit, date, arch, libc linkage), written by
build/freeze.sh and bundled by PyInstaller next to the program; a source install reports the
checkout's commit when git can tell it, or "unknown".
"""

from __future__ import annotations

import contextlib
import functools
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from tomproto import __version__

__all__ = ["build_info", "version_line", "BUILD_INFO_FILE"]

BUILD_INFO_FILE = "tom_build_info.json"


@functools.cache
def build_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "version": __version__,
        "commit": "unknown",
        "date": None,
        "arch": platform.machine(),
        "python": platform.python_version(),
        "frozen": bool(getattr(sys, "frozen", False)),
    }
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        with contextlib.suppress(OSError, ValueError):
            info.update(json.loads((Path(bundle) / BUILD_INFO_FILE).read_text()))
    else:
        info["commit"] = _checkout_commit() or "unknown"
    return info


def _checkout_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def version_line(program: str) -> str:
    info = build_info()
    parts = [f"commit {info['commit']}"]
    if info.get("date"):
        parts.append(f"built {info['date']}")
    parts.append(f"{platform.system().lower()} {info['arch']}")
    parts.append(f"python {info['python']}")
    if info["frozen"]:
        parts.append(str(info.get("linkage", "frozen")))
    return f"{program} {info['version']} ({', '.join(parts)})"
