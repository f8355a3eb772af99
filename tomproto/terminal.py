"""Writing to a terminal that may go away: a dropped ssh session must not cost a run or a server.

When the terminal hangs up, writes to it fail with EIO; when the reader of a pipe exits (`| head`),
with EPIPE. Either used to raise out of a print: a traceback instead of the summary, the live view
stopping the run, Python exiting 120 when its final flush failed. `guarded(stream)` wraps a text
stream so that on EIO or EPIPE the stream is marked gone, its file descriptor is pointed at a sink
(so that nothing buffered, nor the interpreter's flush at exit, fails again) and every later write
is dropped. Other errors (a full disk behind a redirection) still raise: they are output failures
the caller reports.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, TextIO

__all__ = ["GuardedStream", "guarded", "guarded_stdout", "guarded_stderr", "GONE_ERRNOS"]

GONE_ERRNOS = frozenset({errno.EIO, errno.EPIPE})

_guards: dict[int, GuardedStream] = {}  # id(stream) -> its one guard, so one `gone` per stream
_sink_fd: int | None = None


def _sink() -> int:
    """A descriptor that swallows writes: /dev/null, or a pipe we hold both ends of (an empty chroot has no /dev)."""
    global _sink_fd
    if _sink_fd is None:
        try:
            _sink_fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            # The read end is never closed, so writes succeed until the pipe is full (64 KiB).
            _, writer = os.pipe()
            os.set_blocking(writer, False)  # a full pipe must fail a write, never block the exit
            _sink_fd = writer
    return _sink_fd


class GuardedStream:
    """A text stream whose writes are dropped, silently, once its reader has gone (EIO, EPIPE)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except OSError as error:
                self._went(error)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as error:
                self._went(error)

    def _went(self, error: OSError) -> None:
        if error.errno not in GONE_ERRNOS:
            raise error
        self.gone = True
        try:
            os.dup2(_sink(), self._stream.fileno())
            self._stream.flush()  # what is still buffered now goes to the sink
        except (OSError, ValueError, AttributeError):
            pass  # no descriptor (an in-memory stream) or nothing left to flush: nothing to protect

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


def guarded(stream: TextIO) -> GuardedStream:
    """The guard of `stream` (one per stream, so that it is marked gone once for every writer)."""
    if isinstance(stream, GuardedStream):
        return stream
    guard = _guards.get(id(stream))
    if guard is None or guard._stream is not stream:
        guard = _guards[id(stream)] = GuardedStream(stream)
    return guard


def guarded_stdout() -> GuardedStream:
    return guarded(sys.stdout)


def guarded_stderr() -> GuardedStream:
    return guarded(sys.stderr)
