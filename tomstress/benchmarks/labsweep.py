"""The lab's full sweep (root): every topology under every impairment preset, one line each.

    python -m tomstress.benchmarks.labsweep [--count 50] [--topology NAME ...] [--preset NAME ...]

For each (topology, preset): nat-report's verdict from side a, then a ping of COUNT probes 50 ms
apart through the relay: path outcome, time to direct, RTT p50/p99 per path, loss. CI runs each
topology and each truth check once (tests/lab); this is the long version for a release or a
question.
"""

from __future__ import annotations

import argparse
import json
import subprocess

from tomstress.lab.netns import TOPOLOGIES
from tomstress.lab.session import Impairments, start, stop
from tomstress.lab.truth import ping_in_lab

PRESETS = {
    "clean": Impairments(),
    "delay-20ms": Impairments(delay_s=0.020, jitter_s=0.002),
    "loss-2pct": Impairments(loss=0.02),
    "4g-like": Impairments(delay_s=0.030, jitter_s=0.005, loss=0.005, rate="20mbit"),
}


def sweep_one(topology: str, preset: str, count: int) -> dict[str, object]:
    session = start(topology, PRESETS[preset])
    try:
        report = subprocess.run(
            session.command(["nat-report", "--json"]), capture_output=True, text=True, timeout=60,
            env=session.environment(),
        )  # fmt: skip
        verdict = json.loads(report.stdout)["verdict"] if report.stdout.strip() else None
        summary = ping_in_lab(session, "--count", str(count), "--interval", "50ms", "--timeout", "3s")
    finally:
        stop(session)
    return {
        "topology": topology,
        "preset": preset,
        "nat_verdict": verdict,
        "path_outcome": summary["path"]["outcome"],
        "time_to_direct_s": summary["path"]["time_to_direct_s"],
        "rtt_ms_by_path": {
            path: {"n": f["n"], "p50": f["p50"], "p99": f["p99"]} for path, f in summary["rtt_ms_by_path"].items()
        },
        "loss_percent": summary["loss"]["percent"],
        "probes": summary["probes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--topology", action="append", choices=list(TOPOLOGIES), help="default: all")
    parser.add_argument("--preset", action="append", choices=list(PRESETS), help="default: all")
    arguments = parser.parse_args()
    for topology in arguments.topology or list(TOPOLOGIES):
        for preset in arguments.preset or list(PRESETS):
            print(json.dumps(sweep_one(topology, preset, arguments.count)), flush=True)


if __name__ == "__main__":
    main()
