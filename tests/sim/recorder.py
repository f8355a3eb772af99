"""A plain host for network tests: sends what it is told, records what it receives."""

from __future__ import annotations

from tests.sim.hosts import Address
from tests.sim.network import SimNetwork

__all__ = ["Recorder", "send_at"]


class Recorder:
    """Records (time, data, source) of each datagram; `queue` datagrams, then `SimNetwork.poll`."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, Address]] = []
        self._outbox: list[tuple[bytes, Address]] = []

    def queue(self, data: bytes, destination: Address) -> None:
        self._outbox.append((data, destination))

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.received.append((now, data, source))

    def handle_timer(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        outbox, self._outbox = self._outbox, []
        return outbox

    @property
    def payloads(self) -> list[bytes]:
        return [data for _, data, _ in self.received]

    @property
    def sources(self) -> set[Address]:
        return {source for _, _, source in self.received}


def send_at(network: SimNetwork, host: Recorder, when_s: float, data: bytes, destination: Address) -> None:
    """Have `host` send `data` at virtual time `when_s`."""

    def send() -> None:
        host.queue(data, destination)
        network.poll(host)

    network.scheduler.call_at(when_s, send)
