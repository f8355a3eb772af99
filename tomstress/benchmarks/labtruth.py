"""Lab truth checks with figures (root): delay vs ICMP, loss vs its known rate, a 5 s outage.

    python -m tomstress.benchmarks.labtruth [delay|loss|outage ...]
"""

from __future__ import annotations

import json
import sys

from tomstress.lab.truth import delay_truth, loss_truth, outage_truth

CHECKS = {"delay": delay_truth, "loss": loss_truth, "outage": outage_truth}


def main() -> None:
    names = sys.argv[1:] or list(CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        sys.exit(f"unknown check(s) {', '.join(unknown)}: choose from {', '.join(CHECKS)}")
    for name in names:
        print(json.dumps({"check": name, **CHECKS[name]()}), flush=True)


if __name__ == "__main__":
    main()
