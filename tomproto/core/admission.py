"""Which QUIC Initials from unknown connection IDs may open a connection (RFC 9000 §8.1).

Every accepted Initial costs a TLS handshake's CPU and a connection's memory until it completes
or times out, and its source address may be forged. The policy, per Initial:

- DROP when the half-open table (accepted, handshake not complete) is full;
- ACCEPT an Initial carrying a valid Retry token: its address is proven, so it gets a per-source
  cap of its own, `max_validated_per_source`, looser than the unvalidated one (many users behind
  one CGNAT address must get in) but tight enough that one host which follows every Retry cannot
  take the whole table (DROP beyond); a token that is not ours, not for this address or this
  connection ID, or stale is DROPped (not answered: an answer would be a packet per forged
  packet, and our own client never sends a bad token);
- RETRY a token-less Initial when address validation is `always`, when the unvalidated
  half-open handshakes reach `retry_threshold`, or when its source (IPv4 address or IPv6 /64,
  never the port) already holds `max_unvalidated_per_source` of them; a Retry is smaller than
  the 1200-byte Initial that asked for it (no amplification) and their rate is bounded per
  source and in all (beyond either, DROP: one flooding host cannot spend everyone's Retries);
  nor is a Retry sent when the token could only meet a full table or a full validated cap;
  a client that really owns its address comes back at once with a token and is validated;
- ACCEPT it otherwise, as unvalidated: the common case costs no extra round trip;
- an Initial that came through tom-relay names the relay-registered NodeId that sent it; the
  relay checked, at registration, that this NodeId holds its key and owns that address, so the
  Initial is never sent a Retry (it would prove nothing more and cost a relayed round trip), but
  each NodeId holds at most `max_unvalidated_per_source` half-open handshakes, and all relayed
  ones together at most `max_relayed_half_open` (NodeIds cost nothing to make: without that cap,
  a few dozen fresh ones registered through one relay would fill the table); DROP beyond.

Half-open handshakes time out: unvalidated ones after `half_open_timeout_s` (their address may be
forged, so they go quickly; a real one takes one round trip), address-validated and relayed ones
after `validated_half_open_timeout_s`, the dialer's own handshake timeout (a real client on a
lossy link, whose server flight was lost once or twice, must not be dropped while it still
waits). `expired(now)` hands them back to be closed.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tomproto.core.budget import SourceBudgets, TokenBucket, source_key
from tomproto.core.tokens import RETRY_SCID_BYTES, RetryToken, check_token, mint_token

__all__ = ["SECRET_BYTES", "Action", "AdmissionPolicy", "AdmissionSettings", "Verdict"]

SECRET_BYTES = 32
_REFUSALS_TRACKED = 256  # distinct sources with their own refusal counter (the rest: "other")

# What a half-open handshake is, for its caps and its timeout.
_UNVALIDATED, _VALIDATED, _RELAYED = "unvalidated", "validated", "relayed"


class Action(str, Enum):
    accept = "accept"
    retry = "retry"
    drop = "drop"


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    # "auto": Retry only past the thresholds below; "always": every token-less direct Initial.
    address_validation: str = "auto"
    retry_threshold: int = 8  # unvalidated half-open handshakes, all sources together
    max_unvalidated_per_source: int = 4  # per IPv4 address / IPv6 /64; per NodeId when relayed
    max_half_open: int = 256  # every half-open handshake, validated or not
    # Address-validated half-open handshakes per source: max_half_open // 8, so that one host
    # following every Retry holds an eighth of the table, and a CGNAT's users still get 32 at
    # once (each lasts one round trip).
    max_validated_per_source: int = 32
    # Relayed half-open handshakes, all NodeIds together: max_half_open // 4, so a flood of fresh
    # NodeIds through a relay leaves three quarters of the table to everyone else.
    max_relayed_half_open: int = 64
    half_open_timeout_s: float = 3.0  # unvalidated: the address may be forged, time out quickly
    # Address-validated and relayed: TransportSettings.handshake_timeout_s, the dialer's own
    # timeout, so that a real handshake on a lossy link is not dropped while its dialer waits.
    validated_half_open_timeout_s: float = 5.0
    token_lifetime_s: float = 10.0  # tokens are dated in whole seconds: good for 9 to 10 s
    retries_per_s: float = 1000.0  # Retries sent, all sources together (a reflection bound)...
    retries_per_source_per_s: float = 50.0  # ...and per source, so one host cannot spend them all
    max_retry_sources: int = 4096  # sources with a Retry budget of their own at once

    def __post_init__(self) -> None:
        if self.address_validation not in ("auto", "always"):
            raise ValueError(f"address_validation must be 'auto' or 'always', not {self.address_validation!r}")


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str  # the counter label: why accepted, retried or dropped
    source: str = ""  # the per-source key ("" when unknown)
    # ACCEPT: the IDs the server connection must be built with (RFC 9000 §7.3).
    original_destination_id: bytes | None = None
    retry_source_id: bytes | None = None
    # RETRY: the token and the new source connection ID to send in the Retry packet.
    token: bytes | None = None


@dataclass(slots=True)
class _HalfOpen:
    deadline_s: float
    source: str
    kind: str  # _UNVALIDATED, _VALIDATED or _RELAYED


class _DeadlineQueue:
    """Half-open handshakes that share one timeout: insertion order is deadline order, so expiry
    costs O(expired) and the next deadline is the first entry's."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.entries: dict[bytes, _HalfOpen] = {}
        self._last_deadline_s = float("-inf")

    def add(self, key: bytes, now: float, source: str, kind: str) -> None:
        # Never before the last deadline: a clock that steps back must not break the order.
        deadline_s = self._last_deadline_s = max(self._last_deadline_s, now + self.timeout_s)
        self.entries[key] = _HalfOpen(deadline_s, source, kind)

    def next_deadline(self) -> float | None:
        for entry in self.entries.values():
            return entry.deadline_s
        return None

    def due(self, now: float) -> list[tuple[float, bytes]]:
        found = []
        for key, entry in self.entries.items():  # deadlines ascend: stop at the first future one
            if entry.deadline_s > now:
                break
            found.append((entry.deadline_s, key))
        return found


class AdmissionPolicy:
    """Decides per Initial and tracks half-open handshakes by the key the caller gets in ACCEPT
    (the Initial's destination connection ID); the caller reports `completed` and `forget`."""

    def __init__(
        self, settings: AdmissionSettings, secret: bytes, random_bytes: Callable[[int], bytes], now: float
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must have at least 16 bytes")
        self.settings = settings
        self._secret = secret
        self._random_bytes = random_bytes
        # Two timeouts, so two queues, each in deadline order.
        self._quick = _DeadlineQueue(settings.half_open_timeout_s)  # unvalidated
        self._patient = _DeadlineQueue(settings.validated_half_open_timeout_s)  # validated, relayed
        self._by_kind: Counter[str] = Counter()  # half-open handshakes of each kind
        # Half-open per (kind, source): entries leave at zero, so at most one per handshake.
        self._per_source: Counter[tuple[str, str]] = Counter()
        self._retries = TokenBucket.full(settings.retries_per_s, max(1.0, settings.retries_per_s / 10), now)
        # A second's worth at once: users behind one CGNAT address may all dial together.
        self._source_retries = SourceBudgets(
            settings.retries_per_source_per_s, max(1.0, settings.retries_per_source_per_s), settings.max_retry_sources
        )
        self.decisions: Counter[str] = Counter()  # by reason
        self.refused_per_source: Counter[str] = Counter()
        self.timeouts = 0

    @property
    def half_open(self) -> int:
        return len(self._quick.entries) + len(self._patient.entries)

    @property
    def unvalidated_half_open(self) -> int:
        return self._by_kind[_UNVALIDATED]

    @property
    def relayed_half_open(self) -> int:
        return self._by_kind[_RELAYED]

    def held_by(self, source: str) -> int:
        """Half-open handshakes of one source (an IPv4 address, an IPv6 /64, "node:" + NodeId)."""
        return sum(self._per_source[kind, source] for kind in (_UNVALIDATED, _VALIDATED, _RELAYED))

    def initial(
        self,
        now: float,
        destination_id: bytes,
        token: bytes,
        address: tuple[str, int] | None,
        relayed_from: bytes | None = None,
    ) -> Verdict:
        """The decision for a long-header Initial of acceptable size to an unknown ID."""
        if relayed_from is not None:
            verdict = self._relayed(now, destination_id, token, relayed_from)
        elif address is None:
            verdict = Verdict(Action.drop, "no_address")
        else:
            verdict = self._direct(now, destination_id, token, address)
        self.decisions[verdict.reason] += 1
        if verdict.action is Action.drop and verdict.source:
            tracked = verdict.source in self.refused_per_source or len(self.refused_per_source) < _REFUSALS_TRACKED
            self.refused_per_source[verdict.source if tracked else "other"] += 1
        return verdict

    def _direct(self, now: float, destination_id: bytes, token: bytes, address: tuple[str, int]) -> Verdict:
        source = source_key(address[0])
        settings = self.settings
        if token:
            checked = check_token(self._secret, token, address, destination_id, now, settings.token_lifetime_s)
            if not isinstance(checked, RetryToken):
                return Verdict(Action.drop, checked.value, source)
            if self.half_open >= settings.max_half_open:
                return Verdict(Action.drop, "half_open_full", source)
            if self._per_source[_VALIDATED, source] >= settings.max_validated_per_source:
                return Verdict(Action.drop, "validated_source_cap", source)
            self._open(destination_id, now, source, _VALIDATED)
            return Verdict(
                Action.accept, "accepted_validated", source, checked.original_destination_id, checked.retry_source_id
            )
        if self.half_open >= settings.max_half_open:
            return Verdict(Action.drop, "half_open_full", source)
        if settings.address_validation == "always":
            why = "retry_always"
        elif self._by_kind[_UNVALIDATED] >= settings.retry_threshold:
            why = "retry_threshold"
        elif self._per_source[_UNVALIDATED, source] >= settings.max_unvalidated_per_source:
            why = "retry_source_cap"
        else:
            self._open(destination_id, now, source, _UNVALIDATED)
            return Verdict(Action.accept, "accepted_unvalidated", source, destination_id)
        # The token would only meet this source's full validated cap: no Retry for it.
        if self._per_source[_VALIDATED, source] >= settings.max_validated_per_source:
            return Verdict(Action.drop, "validated_source_cap", source)
        if not self._source_retries.take(source, now):
            return Verdict(Action.drop, "retry_source_rate", source)
        if not self._retries.take(now):
            return Verdict(Action.drop, "retry_rate", source)
        retry_source_id = self._random_bytes(RETRY_SCID_BYTES)
        token = mint_token(self._secret, address, destination_id, retry_source_id, now)
        return Verdict(Action.retry, why, source, destination_id, retry_source_id, token)

    def _relayed(self, now: float, destination_id: bytes, token: bytes, node_id: bytes) -> Verdict:
        source = "node:" + node_id.hex()
        settings = self.settings
        if token:  # we never send a Retry through the relay: this token is none of ours
            return Verdict(Action.drop, "token_relayed", source)
        if self.half_open >= settings.max_half_open:
            return Verdict(Action.drop, "half_open_full", source)
        if self._by_kind[_RELAYED] >= settings.max_relayed_half_open:
            return Verdict(Action.drop, "relayed_full", source)
        if self._per_source[_RELAYED, source] >= settings.max_unvalidated_per_source:
            return Verdict(Action.drop, "relayed_source_cap", source)
        self._open(destination_id, now, source, _RELAYED)
        return Verdict(Action.accept, "accepted_relayed", source, destination_id)

    def _open(self, key: bytes, now: float, source: str, kind: str) -> None:
        self._forget(key)  # a key reused after it was forgotten elsewhere starts afresh
        queue = self._quick if kind == _UNVALIDATED else self._patient
        queue.add(key, now, source, kind)
        self._by_kind[kind] += 1
        self._per_source[kind, source] += 1

    def _forget(self, key: bytes) -> bool:
        entry = self._quick.entries.pop(key, None) or self._patient.entries.pop(key, None)
        if entry is None:
            return False
        self._by_kind[entry.kind] -= 1
        held = (entry.kind, entry.source)
        self._per_source[held] -= 1
        if self._per_source[held] <= 0:
            del self._per_source[held]
        return True

    def completed(self, key: bytes) -> None:
        """The handshake under `key` completed: it no longer counts as half-open."""
        self._forget(key)

    def forget(self, key: bytes) -> None:
        """The connection under `key` is gone (closed, refused, timed out elsewhere)."""
        self._forget(key)

    def next_deadline(self) -> float | None:
        quick, patient = self._quick.next_deadline(), self._patient.next_deadline()
        if quick is None or (patient is not None and patient < quick):
            return patient
        return quick

    def expired(self, now: float) -> list[bytes]:
        """Keys of half-open handshakes past their deadline, earliest first, now forgotten
        (close them)."""
        due = list(heapq.merge(self._quick.due(now), self._patient.due(now)))
        for _, key in due:
            self._forget(key)
        self.timeouts += len(due)
        return [key for _, key in due]
