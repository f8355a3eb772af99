"""What the network drives: hosts, and an adapter for machines shaped like the relay core.

A host is any object with the four methods of `Host` (the sans-IO endpoint's interface). The
network calls `receive_datagram` when a datagram arrives and `handle_timer` when the host's
deadline comes; after either call, and when a test pokes the host (`SimNetwork.poll`), it takes
`datagrams_to_send()` and asks `next_deadline()` again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Address", "Host", "MachineHost", "OutgoingDatagram", "SweptMachine"]

Address = tuple[str, int]


class Host(Protocol):
    def receive_datagram(self, data: bytes, source: Address, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]: ...


class OutgoingDatagram(Protocol):
    """The relay core's `Outgoing(data, address, socket)`."""

    @property
    def data(self) -> bytes: ...

    @property
    def address(self) -> Address: ...

    @property
    def socket(self) -> object: ...


class SweptMachine(Protocol):
    """A machine answering each datagram with what to send, swept for expiry at its deadline."""

    def handle(self, data: bytes, source: Address, now: float) -> Sequence[OutgoingDatagram]: ...

    def sweep(self, now: float) -> Sequence[OutgoingDatagram] | None: ...

    def next_deadline(self) -> float | None: ...


class MachineHost:
    """A `SweptMachine` seen as a `Host`: `handle` on each datagram, `sweep` at each deadline.

    The simulated host holds one address, so every `Outgoing` leaves from it whatever its
    `socket` says.
    """

    def __init__(self, machine: SweptMachine) -> None:
        self.machine = machine
        self._outbox: list[tuple[bytes, Address]] = []

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self._outbox.extend((outgoing.data, outgoing.address) for outgoing in self.machine.handle(data, source, now))

    def handle_timer(self, now: float) -> None:
        swept = self.machine.sweep(now)
        if swept:
            self._outbox.extend((outgoing.data, outgoing.address) for outgoing in swept)

    def next_deadline(self) -> float | None:
        return self.machine.next_deadline()

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        outbox, self._outbox = self._outbox, []
        return outbox
