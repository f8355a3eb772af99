"""Lab truth checks with figures (root): delay vs ICMP, loss vs its known rate, a 5 s outage.

    python -m tomstress.benchmarks.labtruth [delay|delay-20ms|loss|outage ...]

`delay` probes every 5 ms (as CI does), `delay-20ms` every 20 ms: the idler the CPU, the longer
our own stack takes (the `stack_p50_ms` figures), while the network's part stays the truth.
"""

from __future__ import annotations

import json
import sys

from tomstress.lab.truth import delay_truth, loss_truth, outage_truth

CHECKS = {
    "delay": delay_truth,
    "delay-20ms": lambda: delay_truth(count=300, interval="20ms"),
    "loss": loss_truth,
    "outage": outage_truth,
}


def main() -> None:
    names = sys.argv[1:] or list(CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        sys.exit(f"unknown check(s) {', '.join(unknown)}: choose from {', '.join(CHECKS)}")
    for name in names:
        print(json.dumps({"check": name, **CHECKS[name]()}), flush=True)


if __name__ == "__main__":
    main()
