"""Partitions and black holes: datagrams between two sets of hosts vanish for a while.

Rules: a partition is judged when a datagram arrives, on its two ends as attached to the
network (the sender's address and the receiving host's address, private ones for hosts behind
a NAT; the address the datagram was sent to when no host would receive it). It is in force from
`start_s` (included) to `end_s` (excluded, never when None) unless lifted earlier, and it cuts
both directions. A side lists addresses (ip, port) or bare ips (every port of that ip).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["Partition", "Side", "between"]

Address = tuple[str, int]
Side = Iterable[Address | str]


class Partition:
    """Drops what `matches(source, destination)` selects while in force."""

    def __init__(self, matches: Callable[[Address, Address], bool], start_s: float, end_s: float | None) -> None:
        if end_s is not None and end_s < start_s:
            raise ValueError("a partition cannot end before it starts")
        self.matches = matches
        self.start_s = start_s
        self.end_s = end_s
        self.lifted = False

    def lift(self) -> None:
        """End the partition now: datagrams arriving from now on are not dropped by it."""
        self.lifted = True

    def in_force(self, now: float) -> bool:
        return not self.lifted and self.start_s <= now and (self.end_s is None or now < self.end_s)

    def cuts(self, source: Address, destination: Address, now: float) -> bool:
        return self.in_force(now) and self.matches(source, destination)


def between(side_a: Side, side_b: Side | None) -> Callable[[Address, Address], bool]:
    """A predicate true for datagrams from one side to the other, either way; with `side_b`
    None, for every datagram to or from side A (a black hole)."""
    in_a = _membership(side_a)
    if side_b is None:
        return lambda source, destination: in_a(source) or in_a(destination)
    in_b = _membership(side_b)
    return lambda source, destination: (in_a(source) and in_b(destination)) or (in_b(source) and in_a(destination))


def _membership(side: Side) -> Callable[[Address], bool]:
    addresses: set[Address] = set()
    ips: set[str] = set()
    for member in side:
        if isinstance(member, str):
            ips.add(member)
        else:
            addresses.add((member[0], member[1]))
    return lambda address: address in addresses or address[0] in ips
