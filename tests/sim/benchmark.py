"""How fast the simulated network runs, in wall time per virtual time and per datagram.

    python -m tests.sim.benchmark [--runs 200] [--json]

"datagrams": a pinger behind an EIM NAT sends 10 000 datagrams a virtual second to an echo
server (20 ms ± 5 ms, 5 % loss each way) for 5 virtual seconds; datagrams sent per wall second.
"quic": `--runs` seeded QUIC runs (quic_hosts.dial_and_send, as tests/sim/test_quic.py runs it:
handshake and a 51 kB stream across 5 % loss each way, plus 0.5 s of tail); wall time for all of
them, and virtual seconds covered.
"""

from __future__ import annotations

import argparse
import json
import time

from tests.sim.hosts import Address
from tests.sim.links import Impairment
from tests.sim.nat import EIM_EIF
from tests.sim.network import SimNetwork
from tests.sim.quic_hosts import dial_and_send

ECHO: Address = ("198.51.100.1", 7)
PAYLOAD = bytes(range(256)) * 200
LOSSY = Impairment(delay_s=0.020, jitter_s=0.005, loss=0.05)


class _Echo:
    def __init__(self) -> None:
        self._outbox: list[tuple[bytes, Address]] = []

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self._outbox.append((data, source))

    def handle_timer(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        outbox, self._outbox = self._outbox, []
        return outbox


class _Pinger(_Echo):
    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._next_s = 0.0

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        self._outbox.append((b"\x00" * 100, ECHO))
        self._next_s = now + self._interval_s

    def next_deadline(self) -> float | None:
        return self._next_s


def datagrams_per_second(virtual_s: float = 5.0) -> dict[str, float]:
    network = SimNetwork(1, default=LOSSY)
    network.attach(_Echo(), ECHO)
    network.attach(_Pinger(0.0001), ("192.168.1.2", 5000), nat=network.add_nat("203.0.113.1", EIM_EIF))
    started = time.perf_counter()
    network.run_until(virtual_s)
    wall_s = time.perf_counter() - started
    return {"datagrams": network.counters.sent, "wall_s": wall_s, "datagrams_per_s": network.counters.sent / wall_s}


def quic_runs(runs: int) -> dict[str, float]:
    started = time.perf_counter()
    virtual_s = datagrams = 0.0
    for seed in range(runs):
        network = dial_and_send(seed, LOSSY, PAYLOAD).network
        virtual_s += network.now
        datagrams += network.counters.sent
    wall_s = time.perf_counter() - started
    return {
        "runs": runs,
        "wall_s": wall_s,
        "virtual_s": virtual_s,
        "datagrams": datagrams,
        "ms_per_run": 1000 * wall_s / runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    figures = {"datagrams": datagrams_per_second(), "quic": quic_runs(arguments.runs)}
    if arguments.json:
        print(json.dumps(figures))
        return
    plain = figures["datagrams"]
    print(
        f"datagrams: {plain['datagrams']:.0f} in {plain['wall_s']:.2f} s wall: "
        f"{plain['datagrams_per_s']:,.0f} datagrams/s"
    )
    quic = figures["quic"]
    print(
        f"quic: {quic['runs']:.0f} seeded runs, {quic['virtual_s']:.1f} virtual s, {quic['datagrams']:.0f} datagrams "
        f"in {quic['wall_s']:.2f} s wall ({quic['ms_per_run']:.1f} ms a run)"
    )


if __name__ == "__main__":
    main()
