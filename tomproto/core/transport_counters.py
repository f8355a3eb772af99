"""What the node's transport counts: packets, refusals by reason, admission decisions, punches."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tomproto.core.quic import PacketCounters

__all__ = ["TransportCounters"]


@dataclass(slots=True)
class TransportCounters:
    datagrams_sent: int = 0
    datagrams_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    send_errors: int = 0
    malformed_packets: int = 0
    streams_refused: Counter[str] = field(default_factory=Counter)
    # Well-formed frames refused by FrameRefusal name: by us (released with a refusal), and by
    # our peers (their answer to frames we sent).
    frames_refused: Counter[str] = field(default_factory=Counter)
    frames_refused_by_peer: Counter[str] = field(default_factory=Counter)
    reset_notices_sent: int = 0
    reset_notices_honoured: int = 0
    connections_refused: int = 0
    relay_errors: int = 0
    punches_answered: int = 0
    punches_refused: int = 0
    # Admission of Initials from unknown connection IDs (admission.py): every decision by reason,
    # Retries sent, tokens refused, refusals per source (IPv4 address, IPv6 /64 or relayed NodeId;
    # the first 256 sources by name, then "other"), half-open timeouts.
    admission: Counter[str] = field(default_factory=Counter)
    retries_sent: int = 0
    tokens_refused: int = 0
    refused_per_source: Counter[str] = field(default_factory=Counter)
    half_open_timeouts: int = 0
    quic: PacketCounters = field(default_factory=PacketCounters)
