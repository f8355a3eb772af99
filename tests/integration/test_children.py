"""The flood test's and benchmark's children stop within a bound, even when they do not want to."""

from __future__ import annotations

import subprocess
import sys

from tomstress.benchmarks.children import read_json_line, stop

STUBBORN = """
import json, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(json.dumps({"event": "ready"}), flush=True)
time.sleep(60)
"""
POLITE = """
import json, time
print(json.dumps({"event": "ready"}), flush=True)
time.sleep(60)
"""


def run_child(script: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    read_json_line(process, "ready", 20.0)  # its signal handling is in place
    return process


def test_a_child_that_ignores_sigterm_is_killed_after_its_grace() -> None:
    process = run_child(STUBBORN)
    try:
        assert stop(process, grace_s=0.2) == -9
    finally:
        process.kill()
        process.wait(timeout=10)


def test_a_child_that_stops_on_sigterm_is_not_killed() -> None:
    process = run_child(POLITE)
    try:
        assert stop(process, grace_s=10.0) == -15
    finally:
        process.kill()
        process.wait(timeout=10)
