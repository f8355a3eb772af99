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
import subprocess
import sys
import tempfile
from typing import Any

from tomstress.lab.netns import PORT_PRESERVING, RELAY_IP, SYMMETRIC, Topology, build_home_home, teardown

RELAY = f"{RELAY_IP}:7478"
TOM_STRESS = [sys.executable, "-m", "tomstress"]


def _ping_once(topology: Topology, count: int, output_dir: str) -> dict[str, Any]:
    responder = subprocess.Popen(
        [*topology.exec_prefix("home-b"), *TOM_STRESS, "responder", "--listen", "0.0.0.0:7400", "--relay", RELAY, "--quiet"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert responder.stdout is not None  # noqa: S101
        node_id = json.loads(responder.stdout.readline())["node_id"]
        result = subprocess.run(
            [*topology.exec_prefix("home-a"), *TOM_STRESS, "ping", "--connect", node_id, "--relay", RELAY,
             "--count", str(count), "--interval", "100ms", "--timeout", "2s", "--json", "--no-live",
             "--output-dir", output_dir],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return json.loads(result.stdout)
    finally:
        responder.kill()
        responder.wait(timeout=10)


def _series(nat_a: str, tries: int, count: int) -> list[dict[str, Any]]:
    topology = build_home_home(nat_a=nat_a, prefix=f"tp{nat_a[:3]}")
    relay = subprocess.Popen(
        [*topology.exec_prefix("pub"), sys.executable, "-c", "from tomproto.relay.cli import main; main()",
         "--listen", RELAY, "--stats-interval", "3600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert relay.stdout is not None  # noqa: S101
        relay.stdout.readline()
        summaries = []
        with tempfile.TemporaryDirectory() as output_dir:
            for _ in range(tries):
                topology.flush_conntrack()
                summaries.append(_ping_once(topology, count, output_dir))
        return summaries
    finally:
        relay.kill()
        relay.wait(timeout=10)
        teardown(topology)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--count", type=int, default=20, help="probes per try, 100 ms apart")
    arguments = parser.parse_args()
    direct_runs = _series(PORT_PRESERVING, arguments.tries, arguments.count)
    relay_runs = _series(SYMMETRIC, 1, arguments.count * 5)
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
