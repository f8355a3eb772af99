"""Where every datagram went: counters by fate, and an optional trace.

Rules: each datagram a host sends counts once as SENT; a duplicated one adds one DUPLICATED copy.
Every copy then ends in exactly one final fate (DELIVERED, LOST, PARTITIONED, NAT_UNMAPPED,
NAT_FILTERED, NO_HAIRPIN, UNROUTABLE) or is still in flight, so at any time:
    sent + duplicated == delivered + lost + partitioned + nat_unmapped + nat_filtered
                         + no_hairpin + unroutable + in_flight
LOST is decided when the datagram is sent; the other final fates when it arrives.
A trace entry is (time_s, source, destination, length, fate), where source is the sender's
attached address and destination the address it sent to, for every entry of that datagram.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import NamedTuple

__all__ = ["FINAL_FATES", "Counters", "Fate", "TraceEntry"]

Address = tuple[str, int]


class Fate(enum.StrEnum):
    SENT = "sent"
    DUPLICATED = "duplicated"
    DELIVERED = "delivered"
    LOST = "lost"  # the link's loss draw
    PARTITIONED = "partitioned"  # a partition in force between the two ends
    NAT_UNMAPPED = "nat_unmapped"  # to a NAT's public port with no live mapping
    NAT_FILTERED = "nat_filtered"  # mapped, but the NAT's filtering refused the source
    NO_HAIRPIN = "no_hairpin"  # to its own NAT's public address, which does not hairpin
    UNROUTABLE = "unroutable"  # no host, and no NAT, at the destination


FINAL_FATES = tuple(fate for fate in Fate if fate not in (Fate.SENT, Fate.DUPLICATED))


@dataclass(slots=True)
class Counters:
    sent: int = 0
    duplicated: int = 0
    delivered: int = 0
    lost: int = 0
    partitioned: int = 0
    nat_unmapped: int = 0
    nat_filtered: int = 0
    no_hairpin: int = 0
    unroutable: int = 0
    in_flight: int = 0

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


class TraceEntry(NamedTuple):
    time_s: float
    source: Address
    destination: Address
    length: int
    fate: Fate
