"""Lifelines: stop when the process that stands for us is gone, however it went (SIGKILL included).

Two cases, one idea (watch, from the event loop, something that ends when the other process does):

- A child we start (`ping --local`'s responder) gets a pipe on stdin whose write end only we hold.
  When we exit, even by SIGKILL, the kernel closes it and the child reads EOF (`watch_eof`).
- In the static binary, the process the user started and may kill is not ours: staticx's
  bootloader runs PyInstaller's, which runs Python as its child, so the tree is
  bootloader -> PyInstaller parent -> us. Each forwards SIGINT and SIGTERM, but a SIGKILL of the
  outermost leaves the other two running, with nobody to stop them. `watch_outermost` finds the
  bootloader (our grandparent) and watches it with a pidfd, or, where the kernel has none (before
  5.3), by polling /proc. Outside the static binary (no STATICX_PROG_PATH) there is nothing to
  watch: the Python process is the one the user started.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

__all__ = ["watch_eof", "watch_outermost", "watch_process", "outermost_pid", "POLL_INTERVAL_S"]

POLL_INTERVAL_S = 0.25  # the fallback's delay in noticing a death; the pidfd has none
OUTERMOST_GRACE_S = 0.2  # see watch_outermost
PYINSTALLER_LEVELS = 1  # processes between staticx's bootloader and a frozen us
READ_BYTES = 4096

Cancel = Callable[[], None]


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the command name before it may hold spaces."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("ascii", "replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def outermost_pid() -> int | None:
    """The staticx bootloader's pid when we run inside the static binary; None otherwise."""
    if not os.environ.get("STATICX_PROG_PATH"):
        return None
    # PyInstaller's one-file parent sits between the bootloader and a frozen us. Found by position,
    # not by comparing executables: under qemu-user every process's executable is qemu.
    pid: int | None = os.getppid()
    for _ in range(PYINSTALLER_LEVELS if getattr(sys, "frozen", False) else 0):
        pid = _parent_of(pid) if pid is not None else None
    return pid if pid is not None and pid > 1 else None


def _running(pid: int, start_ticks: str | None) -> bool:
    """Alive and not a zombie; the same process (start time), not another that took its pid."""
    fields = _stat_fields(pid)
    if fields is None:
        try:
            os.kill(pid, 0)  # no /proc: existence only
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return fields[0] not in ("Z", "X") and (start_ticks is None or fields[19] == start_ticks)


def watch_process(loop: asyncio.AbstractEventLoop, pid: int, on_gone: Callable[[], None]) -> Cancel:
    """Call `on_gone()` once, on the loop, when process `pid` exits; return a function that stops watching."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return loop.call_soon(on_gone).cancel  # gone before we looked
    except (OSError, AttributeError):  # no pidfd on this kernel (or this Python): poll
        return _poll(loop, pid, on_gone)

    def stop_watching() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)

    cancel = _once(stop_watching)

    def exited() -> None:
        cancel()
        on_gone()

    loop.add_reader(pidfd, exited)  # a pidfd becomes readable when its process exits
    return cancel


def _poll(loop: asyncio.AbstractEventLoop, pid: int, on_gone: Callable[[], None]) -> Cancel:
    fields = _stat_fields(pid)
    start_ticks = fields[19] if fields else None
    watched_parent = pid == os.getppid()
    handle: asyncio.Handle | None = None

    def check() -> None:
        nonlocal handle
        # Our own parent's death shows at once in getppid() (we are reparented); others need /proc.
        if (watched_parent and os.getppid() != pid) or not _running(pid, start_ticks):
            handle = None
            on_gone()
            return
        handle = loop.call_later(POLL_INTERVAL_S, check)

    def cancel() -> None:
        if handle is not None:
            handle.cancel()

    handle = loop.call_soon(check)
    return cancel


def watch_outermost(loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]) -> Cancel | None:
    """In the static binary, call `on_gone()` when the process the user started exits; else None.

    The call comes OUTERMOST_GRACE_S late: a hangup sent to the whole process group kills the
    bootloader (it does not handle SIGHUP) and reaches us too, and the signal, which says why we
    stop, must be seen first.
    """
    pid = outermost_pid()
    if pid is None:
        return None

    def on_exit() -> None:
        loop.call_later(OUTERMOST_GRACE_S, on_gone)

    return watch_process(loop, pid, on_exit)


def watch_eof(loop: asyncio.AbstractEventLoop, fd: int, on_eof: Callable[[], None]) -> Cancel:
    """Call `on_eof()` once when `fd` (a pipe) reaches end of file or fails; data read is discarded.

    Raises PermissionError when `fd` cannot be watched (a regular file, /dev/null): only a pipe
    or a socket tells us that its writer has gone.
    """

    def readable() -> None:
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # a read error ends the lifeline too: the writer cannot be heard any more
        if not data:
            cancel()
            on_eof()

    cancel = _once(lambda: loop.remove_reader(fd))
    loop.add_reader(fd, readable)
    return cancel


def _once(action: Callable[[], object]) -> Cancel:
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run
