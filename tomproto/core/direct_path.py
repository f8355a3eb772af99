"""The direct path of one connection, sans-IO: punching, validating, watching, falling back.

Rules (docs/relay-protocol.md, "Punch coordination"):
- a connection dialled through the relay starts on the relay path at once. When the relay
  introduces the peer (`start`), it punches towards every candidate address of the peer
  (PUNCH_ROUNDS rounds, PUNCH_SPACING_S apart), and punches back at once towards an address a
  peer's punch came from (the first punch of the side that started first dies at the other NAT;
  the answer to the second side's opens the way back);
- an authenticated PUNCH_ACK that answers one of our nonces validates its source address: the
  connection switches to direct, with the punch's round trip as the path RTT;
- while direct, a punch goes to that address every KEEPALIVE_S (also the NAT keep-alive); when
  SILENT_AFTER_S pass without an answer (plus a round trip's grace, SILENT_GRACE_S at least: the
  answer to the third keep-alive is due just then) the connection falls back to the relay at
  once; on the relay it asks the relay to introduce the peer again every RETRY_S;
- a call whose introduction does not come (the CALL or both CALL_FROMs lost) is repeated after
  CALL_ANSWER_S, then twice and four times that, before the RETRY_S cadence takes over: one lost
  packet must not cost a connection five seconds on the relay;
- every switch is a `PathSwitched` effect; `time_to_direct_s` runs from the connection's start.

The machine takes `now` and returns effects; nonces come from the injected `random_bytes`.
A connection dialled at a known address starts direct and is left to QUIC (`watched=False`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tomproto.core.paths import Address, Path

__all__ = [
    "DirectPath",
    "SendPunch",
    "PathSwitched",
    "CallPeer",
    "PathEffect",
    "PUNCH_ROUNDS",
    "PUNCH_SPACING_S",
    "KEEPALIVE_S",
    "SILENT_AFTER_S",
    "RETRY_S",
    "CALL_ANSWER_S",
    "PUNCH_NONCE_BYTES",
]

PUNCH_ROUNDS = 10
PUNCH_SPACING_S = 0.1
KEEPALIVE_S = 1.0
SILENT_AFTER_S = 3.0
SILENT_GRACE_S = 0.1
RETRY_S = 5.0
CALL_ANSWER_S = 0.25
CALL_REPEATS = 3  # calls after CALL_ANSWER_S x 1, 2, 4 before falling back to RETRY_S
PUNCH_NONCE_BYTES = 8
MAX_OUTSTANDING_PUNCHES = 256  # nonces awaiting an answer; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class SendPunch:
    """Send a signed PUNCH carrying `nonce` to `address`."""

    address: Address
    nonce: bytes


@dataclass(frozen=True, slots=True)
class PathSwitched:
    """Send by `current` from now on (to `address` when direct). QUIC sees nothing of it."""

    previous: Path
    current: Path
    address: Address | None
    path_rtt_s: float | None
    at_s: float
    time_to_direct_s: float | None


@dataclass(frozen=True, slots=True)
class CallPeer:
    """Ask the relay to introduce us to the peer again, so that both sides punch."""


PathEffect = SendPunch | PathSwitched | CallPeer


class DirectPath:
    def __init__(
        self,
        *,
        started_at: float,
        random_bytes: Callable[[int], bytes],
        direct_address: Address | None = None,
        punch: bool = True,
    ) -> None:
        self._random_bytes = random_bytes
        self.started_at = started_at
        # Dialled at a known address: direct from the start, and QUIC itself watches that path.
        # Without punching (`punch=False`: measuring the relay itself) a relayed one stays there.
        self.watched = direct_address is None and punch
        self.path = Path.relay if direct_address is None else Path.direct
        self.address = direct_address  # where direct packets go
        self.candidates: tuple[Address, ...] = ()
        self.rtt_s: float | None = None
        self.punches_sent = 0
        self.time_to_direct_s: float | None = None
        self._rounds_left = 0
        self._next_round_at: float | None = None
        self._last_answer_at: float | None = None
        self._next_keepalive_at: float | None = None
        self._next_call_at: float | None = None
        self._unanswered_calls = 0
        self._outstanding: OrderedDict[bytes, tuple[float, Address]] = OrderedDict()
        self._punched_back: set[Address] = set()  # once per address and punching session
        self._stopped = False

    @property
    def is_direct(self) -> bool:
        return self.path is Path.direct

    # -- inputs ---------------------------------------------------------------------------------

    def established(self, now: float, *, relay_available: bool, dialer: bool) -> list[PathEffect]:
        """The handshake completed. A relayed dialer asks the relay to introduce the peer (the
        relay tells both sides); either side asks again every RETRY_S while on the relay."""
        if not self.watched:
            return []
        self._next_call_at = now + RETRY_S
        return [self._call(now)] if dialer and relay_available and not self.is_direct else []

    def start(self, candidates: tuple[Address, ...], now: float) -> list[PathEffect]:
        """The relay introduced the peer: punch towards its candidates now."""
        if not self.watched or self._stopped:
            return []
        self.candidates = tuple(dict.fromkeys(candidates))  # no duplicates, order kept
        self._unanswered_calls = 0
        if not self.is_direct:
            self._next_call_at = now + RETRY_S  # if punching fails, ask again later
        self._rounds_left = PUNCH_ROUNDS
        self._punched_back.clear()
        return self._punch_round(now)

    def punched_by_peer(self, address: Address, now: float) -> list[PathEffect]:
        """The peer's punch came through from `address`: its NAT now lets us in at that address
        too, so punch back at once instead of waiting for our next round."""
        if not self.watched or self.is_direct or address in self._punched_back or self._stopped:
            return []
        self._punched_back.add(address)
        return [self._punch(address, now)]

    def answered(self, nonce: bytes, address: Address, now: float) -> list[PathEffect]:
        """An authenticated PUNCH_ACK for `nonce` came from `address`."""
        sent = self._outstanding.pop(nonce, None)
        if sent is None or self._stopped:
            return []
        self.rtt_s = now - sent[0]
        self._last_answer_at = now
        if self.is_direct and self.address == address:
            return []
        if self.time_to_direct_s is None:
            self.time_to_direct_s = now - self.started_at
        self._next_round_at = None
        self._next_call_at = None
        self._next_keepalive_at = now + KEEPALIVE_S
        return [self._switch(Path.direct, address, now)]

    def stop(self) -> None:
        """The connection is gone: no more effects, no more deadlines."""
        self._stopped = True
        self._outstanding.clear()

    def next_deadline(self) -> float | None:
        if self._stopped or not self.watched:
            return None
        deadlines = [self._next_round_at, self._next_call_at]
        if self.is_direct:
            deadlines.append(self._next_keepalive_at)
            if self._last_answer_at is not None:
                deadlines.append(self._silent_at)
        due = [deadline for deadline in deadlines if deadline is not None]
        return min(due) if due else None

    def handle_timer(self, now: float, *, relay_available: bool) -> list[PathEffect]:
        if self._stopped or not self.watched:
            return []
        effects: list[PathEffect] = []
        if self.is_direct and self._last_answer_at is not None and now >= self._silent_at:
            effects.append(self._switch(Path.relay, None, now))
            self._next_keepalive_at = None
            self._unanswered_calls = 0
            self._next_call_at = now  # call again at once, below
        if self._next_round_at is not None and now >= self._next_round_at:
            effects += self._punch_round(now)
        if self.is_direct and self._next_keepalive_at is not None and now >= self._next_keepalive_at:
            assert self.address is not None  # noqa: S101 - direct always has an address
            effects.append(self._punch(self.address, now))
            self._next_keepalive_at = now + KEEPALIVE_S
        if not self.is_direct and self._next_call_at is not None and now >= self._next_call_at:
            if relay_available:
                effects.append(self._call(now))
            else:
                self._next_call_at = now + RETRY_S
        return effects

    # -- internals ------------------------------------------------------------------------------

    @property
    def _silent_at(self) -> float:
        """When the direct path counts as dead: SILENT_AFTER_S after the last answer, plus a
        round trip, so that only three keep-alives lost in a row (not two, and the third's
        answer a little late) send the connection back to the relay."""
        assert self._last_answer_at is not None  # noqa: S101 - callers check
        return self._last_answer_at + SILENT_AFTER_S + max(SILENT_GRACE_S, self.rtt_s or 0.0)

    def _call(self, now: float) -> CallPeer:
        if self._unanswered_calls < CALL_REPEATS:
            self._next_call_at = now + CALL_ANSWER_S * 2**self._unanswered_calls
        else:
            self._next_call_at = now + RETRY_S
        self._unanswered_calls += 1
        return CallPeer()

    def _punch_round(self, now: float) -> list[PathEffect]:
        self._next_round_at = None
        if self.is_direct or self._rounds_left <= 0:
            return []
        self._rounds_left -= 1
        if self._rounds_left > 0:
            self._next_round_at = now + PUNCH_SPACING_S
        return [self._punch(address, now) for address in self.candidates]

    def _punch(self, address: Address, now: float) -> SendPunch:
        nonce = self._random_bytes(PUNCH_NONCE_BYTES)
        self._outstanding[nonce] = (now, address)
        while len(self._outstanding) > MAX_OUTSTANDING_PUNCHES:
            self._outstanding.popitem(last=False)
        self.punches_sent += 1
        return SendPunch(address, nonce)

    def _switch(self, current: Path, address: Address | None, now: float) -> PathSwitched:
        previous = self.path
        self.path = current
        if address is not None:
            self.address = address
        return PathSwitched(previous, current, address, self.rtt_s if current is Path.direct else None, now,
                            self.time_to_direct_s)  # fmt: skip
