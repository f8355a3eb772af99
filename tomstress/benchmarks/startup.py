"""Start-up time and size of a tom-stress binary (or any command).

    python -m tomstress.benchmarks.startup build/out/x86_64/tom-stress [--runs 5]

Runs `COMMAND --version` once to warm the page cache, then RUNS more times, and prints the median
wall time of those and the size of the file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", help="the binary (or a quoted command line)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after the warm-up (default 5)")
    arguments = parser.parse_args()
    command = shlex.split(arguments.command)
    subprocess.run([*command, "--version"], check=True, capture_output=True, timeout=120)
    times = []
    for _ in range(max(1, arguments.runs)):
        started = time.perf_counter()
        subprocess.run([*command, "--version"], check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - started)
    path = Path(command[0])
    result = {
        "command": arguments.command,
        "size_bytes": path.stat().st_size if path.is_file() else None,
        "version_median_s": round(statistics.median(times), 3),
        "runs_s": [round(value, 3) for value in times],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
