"""Hole punching between two homes behind NATs, repeated: time to direct, and RTT via relay
against direct. Needs root, iproute2, iptables and conntrack (it builds network namespaces).

    python -m tomstress.benchmarks.punch [--tries 20] [--count 20]

Each try flushes the NATs' conntrack tables, starts a fresh responder behind NAT b and pings it
from behind NAT a through the relay (`--relay` only: the connection starts on the relay and may
punch to direct). Then one run with a symmetric NAT on side a gives the relay-only RTT.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from tomstress.lab.session import Impairments, LabSession, start, start_responder, stop
from tomstress.lab.truth import ping_in_lab


def _series(topology: str, tries: int, count: int) -> list[dict[str, Any]]:
    session: LabSession = start(topology, Impairments())
    try:
        summaries = []
        for attempt in range(tries):
            if attempt:  # a fresh responder and fresh NAT state for every try
                responder = session.processes.pop()
                responder.kill()
                responder.wait(timeout=10)
                session.topology.flush_conntrack()
                start_responder(session)
            summaries.append(ping_in_lab(session, "--count", str(count), "--interval", "100ms", "--timeout", "2s"))
        return summaries
    finally:
        stop(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--count", type=int, default=20, help="probes per try, 100 ms apart")
    arguments = parser.parse_args()
    direct_runs = _series("home-home", arguments.tries, arguments.count)
    relay_runs = _series("symmetric", 1, arguments.count * 5)
    times = [run["path"]["time_to_direct_s"] for run in direct_runs if run["path"]["time_to_direct_s"] is not None]
    direct_rtts = [run["rtt_ms_by_path"]["direct"]["p50"] for run in direct_runs if "direct" in run["rtt_ms_by_path"]]
    result = {
        "tries": arguments.tries,
        "went_direct": sum(run["path"]["outcome"] == "direct" for run in direct_runs),
        "probes_lost": sum(run["probes"]["lost"] for run in direct_runs),
        "time_to_direct_s": {"p50": statistics.median(times) if times else None, "max": max(times) if times else None,
                             "min": min(times) if times else None},
        "direct_rtt_p50_ms_median_of_tries": statistics.median(direct_rtts) if direct_rtts else None,
        "symmetric_nat": {"outcome": relay_runs[0]["path"]["outcome"], "rtt_ms": relay_runs[0]["rtt_ms"],
                          "probes": relay_runs[0]["probes"]},
    }  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
