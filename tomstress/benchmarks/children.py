"""The child processes of the flood test and benchmark: their JSON lines, read with a real
deadline, and a bounded stop.

A deadline checked around a blocking `readline()` bounds nothing: a child that prints nothing
(hung, or dead with a grandchild still holding its stdout) holds the reader forever. So a line is
read from the pipe's file descriptor, each byte only once select() says one is there. One byte
at a time, so that nothing past the line is taken from the pipe: whoever reads the child's stdout
next (another call, `communicate()`) finds the rest. Lines are short JSON, so the extra system
calls cost nothing that matters. Half a line read before a timeout is kept for the next call.
The pipe must not have been read through `process.stdout`'s own buffer before (what that buffer
holds, this cannot see).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
import weakref
from typing import Any

__all__ = ["read_json_line", "stop", "wait_or_kill", "MAX_LINE_BYTES"]

MAX_LINE_BYTES = 4 * 1024 * 1024  # a relay's stats line with thousands of nodes fits
KILL_WAIT_S = 10.0  # after SIGKILL: only an uninterruptible sleep in the kernel takes longer

# The start of a line whose end had not come when a read timed out, per child.
_partial_lines: weakref.WeakKeyDictionary[Any, bytearray] = weakref.WeakKeyDictionary()


def _name(process: subprocess.Popen[Any]) -> str:
    args = process.args if isinstance(process.args, (list, tuple)) else [process.args]
    return " ".join(str(arg) for arg in args[:6])


def read_json_line(process: subprocess.Popen[Any], event: str, timeout_s: float) -> dict[str, Any]:
    """The child's next JSON line whose "event" is `event` (other lines are skipped), within
    `timeout_s`; TimeoutError naming the child when none comes in time or its stdout closes."""
    if process.stdout is None:
        raise ValueError(f"{_name(process)} has no stdout to read: start the child with stdout=subprocess.PIPE")
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    line = _partial_lines.setdefault(process, bytearray())
    last = ""  # the last other line, for the error message
    while True:  # bounded by the deadline: every pass waits in select() until at most then
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            raise TimeoutError(f"no {event!r} line from {_name(process)} within {timeout_s:g} s; last: {last!r}")
        byte = os.read(fd, 1)
        if not byte:
            raise TimeoutError(f"{_name(process)} closed its output before a {event!r} line; last: {last!r}")
        if byte != b"\n":
            if len(line) >= MAX_LINE_BYTES:
                raise ValueError(f"a line over {MAX_LINE_BYTES} bytes from {_name(process)}")
            line += byte
            continue
        text = line.decode(errors="replace")
        line.clear()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("event") == event:
            return parsed
        last = text[:200]


def wait_or_kill(process: subprocess.Popen[Any], grace_s: float) -> int:
    """Its exit code once it has exited: given `grace_s`, then SIGKILL (for a child that was
    already asked to stop)."""
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=KILL_WAIT_S)


def stop(process: subprocess.Popen[Any], grace_s: float = 10.0) -> int:
    """SIGTERM (a clean stop: the child prints its last counters), then SIGKILL if it is still
    there after `grace_s`; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return wait_or_kill(process, grace_s)
