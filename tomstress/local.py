"""`--local`: a responder on loopback in a child process, for a run that needs no setup.

The child is this very program started again: `python -m tomstress` from a Python install, the
binary itself when frozen. PyInstaller sets `sys.frozen` and `sys.executable` is its binary; a
staticx wrapper runs that binary from a temporary directory and names the file the user ran in
STATICX_PROG_PATH, which is the one to start again.

The child dies with us, however we die: its stdin is a pipe whose write end only we hold, and it
runs with `--stop-on-stdin-eof`. When we exit, SIGKILL included, the kernel closes our end and the
child reads EOF and stops (tomproto/lifeline.py). Until then we keep the pipe open and write nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from tomproto.identity import NodeId
from tomproto.transport import TransportError

__all__ = ["own_command", "local_responder", "READY_TIMEOUT_S"]

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


def own_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return [os.environ.get("STATICX_PROG_PATH") or sys.executable]
    return [sys.executable, "-m", "tomstress"]


@asynccontextmanager
async def local_responder(
    *extra_arguments: str,
) -> AsyncIterator[tuple[NodeId, tuple[str, int], asyncio.subprocess.Process]]:
    """Start a responder on 127.0.0.1 (a free port); yield its NodeId, address and process."""
    process = await asyncio.create_subprocess_exec(
        *own_command(), "responder", "--listen", "127.0.0.1:0", "--quiet", "--stop-on-stdin-eof", *extra_arguments,
        stdin=asyncio.subprocess.PIPE,  # the lifeline (and an empty chroot has no /dev/null anyway)
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None  # noqa: S101 - we asked for a pipe
    try:
        assert process.stdout is not None  # noqa: S101 - we asked for a pipe
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
            ready = json.loads(line)
            node_id, port = NodeId.parse(ready["node_id"]), int(ready["port"])
        except (TimeoutError, ValueError, KeyError, TypeError) as error:
            raise TransportError(f"the local responder did not start ({type(error).__name__})") from None
        yield node_id, ("127.0.0.1", port), process
    finally:
        # Closing the lifeline stops the child; a SIGTERM too would land in the middle of its
        # shutdown (asyncio closes its wakeup fd before removing its handlers, and complains).
        process.stdin.close()
        for stop in (None, process.terminate, process.kill):
            if process.returncode is not None:
                break
            if stop is not None:
                stop()
            with suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
