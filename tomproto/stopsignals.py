"""The signals that stop a long-running command (ping, responder, tom-relay), and their exit codes.

SIGINT (Ctrl-C), SIGTERM (kill, systemd) and SIGHUP (the terminal or the ssh session went away)
all stop the command cleanly: the run's summary or the server's final counters are written. A
run (ping) then exits with 128 + the signal's number; a server (responder, tom-relay) exits 0,
being stopped is its normal end (systemd counts 143 as a failure).

SIGHUP is the one a user may have asked to ignore: `nohup tom-stress ping ...` starts us with
SIGHUP set to SIG_IGN precisely so that a dropped session does not end the run. Installing a
handler would undo that, so a SIGHUP ignored at start stays ignored. SIGINT and SIGTERM are always
handled, as before: a shell starts background jobs with SIGINT ignored, and those must still stop
on `kill -INT`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

__all__ = ["EXIT_SIGNAL", "install_stop_handlers"]

EXIT_SIGNAL: dict[signal.Signals, int] = {signal.SIGHUP: 129, signal.SIGINT: 130, signal.SIGTERM: 143}

# Signals whose SIG_IGN disposition at start is a request from the user that we keep.
_HONOUR_IGNORED = (signal.SIGHUP,)


def install_stop_handlers(
    loop: asyncio.AbstractEventLoop, on_stop: Callable[[signal.Signals], None]
) -> tuple[signal.Signals, ...]:
    """Call `on_stop(signum)` on the loop for each stop signal; return the signals now handled."""
    handled = []
    for signum in EXIT_SIGNAL:
        if signum in _HONOUR_IGNORED and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        loop.add_signal_handler(signum, on_stop, signum)
        handled.append(signum)
    return tuple(handled)
