"""The direct path of one connection: punching, validating, watching, falling back.

Rules (docs/relay-protocol.md, "Punch coordination"):
- a connection dialled through the relay starts on the relay path at once; it punches towards
  every candidate address of the peer (PUNCH_ROUNDS rounds, PUNCH_SPACING_S apart), and punches
  back at once towards an address a peer's punch came from (the first punch of the side that
  started first dies at the other NAT; the answer to the second side's opens the way back);
- an authenticated PUNCH_ACK that answers one of our nonces validates its source address: the
  connection switches to direct, with the round trip as the path RTT;
- while direct, a PUNCH goes to that address every KEEPALIVE_S (also the NAT keep-alive);
  SILENT_AFTER_S without an answer and the connection falls back to the relay; from the relay it
  calls and punches again every RETRY_S;
- every switch is a PathChanged event; time_to_direct_s runs from the connection's first packet.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING

from tomproto.relay import protocol as wire
from tomproto.relay.protocol import Address

if TYPE_CHECKING:
    from tomproto.transport.connection import PeerConnection

__all__ = ["DirectPath", "PUNCH_ROUNDS", "PUNCH_SPACING_S", "KEEPALIVE_S", "SILENT_AFTER_S", "RETRY_S"]

PUNCH_ROUNDS = 10
PUNCH_SPACING_S = 0.1
KEEPALIVE_S = 1.0
SILENT_AFTER_S = 3.0
RETRY_S = 5.0
_MAX_OUTSTANDING = 256


class DirectPath:
    def __init__(self, connection: PeerConnection) -> None:
        self.connection = connection
        self.candidates: tuple[Address, ...] = ()
        self.address: Address | None = None  # the validated direct address
        self.rtt_s: float | None = None
        self.punches_sent = 0
        self.rounds_left = 0
        self.last_answer_at: float | None = None
        self.last_call_at: float | None = None
        self.time_to_direct_s: float | None = None
        self._outstanding: OrderedDict[bytes, tuple[float, Address]] = OrderedDict()
        self._punched_back: set[Address] = set()  # once per address and punching session

    @property
    def loop(self):  # type: ignore[no-untyped-def]
        return self.connection.endpoint.loop

    def start(self, candidates: tuple[Address, ...]) -> None:
        """The relay introduced the peer: punch towards its candidates now."""
        self.candidates = tuple(dict.fromkeys(candidates))  # no duplicates, order kept
        self.rounds_left = PUNCH_ROUNDS
        self._punched_back.clear()
        self._punch_round()

    def _punch_round(self) -> None:
        if self.connection.closed or self.rounds_left <= 0 or self.connection.path_is_direct:
            return
        self.rounds_left -= 1
        for address in self.candidates:
            self._send_punch(address)
        self.loop.call_later(PUNCH_SPACING_S, self._punch_round)

    def _send_punch(self, address: Address) -> None:
        peer = self.connection.peer_id_raw
        if peer is None:
            return
        nonce = os.urandom(wire.NONCE_BYTES)
        self._outstanding[nonce] = (self.loop.time(), address)
        while len(self._outstanding) > _MAX_OUTSTANDING:
            self._outstanding.popitem(last=False)
        self.punches_sent += 1
        endpoint = self.connection.endpoint
        endpoint.send_packet(wire.punch(wire.PUNCH, endpoint.identity, peer, nonce), address)

    def punched_by_peer(self, address: Address) -> None:
        """The peer's punch came through from `address`: its NAT now lets us in at that address
        too, so punch back at once instead of waiting for our next round."""
        if not self.connection.path_is_direct and address not in self._punched_back:
            self._punched_back.add(address)
            self._send_punch(address)

    def answered(self, nonce: bytes, address: Address) -> None:
        """An authenticated PUNCH_ACK for `nonce` came from `address`."""
        sent = self._outstanding.pop(nonce, None)
        if sent is None:
            return
        now = self.loop.time()
        self.rtt_s = now - sent[0]
        self.last_answer_at = now
        if not self.connection.path_is_direct or self.address != address:
            self.address = address
            if self.time_to_direct_s is None:
                self.time_to_direct_s = now - self.connection.started_at
            self.connection.switch_path(direct=address, path_rtt_s=self.rtt_s)

    def tick(self) -> None:
        """Once a second: keep the direct path alive, or notice it died, or try again."""
        connection = self.connection
        if connection.closed:
            return
        now = self.loop.time()
        if connection.path_is_direct:
            if self.address is None:
                return  # dialled at a known address: QUIC itself watches that path
            if self.last_answer_at is not None and now - self.last_answer_at > SILENT_AFTER_S:
                connection.switch_path(direct=None, path_rtt_s=None)
                connection.endpoint.call_through_relay(connection)
            else:
                self._send_punch(self.address)
        elif connection.relay_available and (self.last_call_at is None or now - self.last_call_at >= RETRY_S):
            connection.endpoint.call_through_relay(connection)
