"""Group facts as a campaign sees them, and the failover figures computed from them.

- `GroupFactRecorder` subscribes to a node's events and records every group fact
  (tomproto/core/group_events.py) with the monotonic and wall-clock times it was seen at (ns);
  its `send` sends a group message and records that too (`GroupMessageSent`, the one record that
  is not a fact of the core: a send is the application's own act). Records go to and come back
  from JSON (`record_to_json`, `record_from_json`): `tom-stress group-node` writes them one a line,
  a parent (the campaign, a test) reads them back.
- `failover_figures` and `message_counts` are pure functions over the records of several nodes
  (NodeId hex -> records): detection, promotion, migration at each member, chain restored, the
  first message through the new hub at each member, and messages sent / delivered / duplicated /
  lost (a message is its id; a duplicate is the same id delivered twice to one member).

Clocks. A fact's own time is `at_s`, the runtime's `now` (time.monotonic() in a real node), and so
is `HubPromoted.last_pong_s`. On one machine every process reads the same monotonic clock, so
figures across processes are exact with `clock="monotonic"`. Across machines use `clock="wall"`:
each record carries both clocks at the instant it was seen, and a fact's times are moved to the
wall clock with its own record's offset (the figures then carry the machines' clock offset, which
the campaign's clock-offset estimate bounds). A crash time given to the figures is on the chosen
clock.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tomproto.core.group_events import GroupEvent
from tomproto.events import Subscription
from tomproto.identity import NodeId
from tomproto.node import Node

__all__ = [
    "FACT_TYPES",
    "SENT",
    "Clock",
    "FactRecord",
    "GroupFactRecorder",
    "record_to_json",
    "record_from_json",
    "fact_fields",
    "FailoverFigures",
    "MessageCounts",
    "failover_figures",
    "message_counts",
]

FACT_TYPES: tuple[type, ...] = typing.get_args(GroupEvent)  # every group fact the runtime publishes
SENT = "GroupMessageSent"  # a record of our own send: group_id, message_id, at_s
DETECTION_KINDS = ("HubUnreachableReported", "HubSuspected")

Clock = Literal["monotonic", "wall"]


@dataclass(frozen=True, slots=True)
class FactRecord:
    """One group fact (or send) seen by one node: its type name, its fields as JSON values
    (NodeIds as hex, enums as their values), and when it was seen on both clocks."""

    kind: str
    fields: dict[str, Any]
    mono_ns: int  # time.monotonic_ns() when seen
    wall_ns: int  # time.time_ns() when seen

    @property
    def group_id(self) -> str:
        return str(self.fields.get("group_id", ""))

    def on_clock(self, monotonic_s: float, clock: Clock) -> float:
        """A time of this node's runtime (monotonic seconds), on `clock`."""
        if clock == "monotonic":
            return monotonic_s
        return monotonic_s + (self.wall_ns - self.mono_ns) / 1e9

    def time_s(self, clock: Clock = "monotonic") -> float:
        """When the fact happened (its `at_s`; when seen, for a record without one), on `clock`."""
        at_s = self.fields.get("at_s")
        return self.on_clock(self.mono_ns / 1e9 if at_s is None else float(at_s), clock)


def _json_value(value: Any) -> Any:
    if isinstance(value, NodeId):
        return value.hex
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_json_value(item) for item in value]
    return value


def fact_fields(fact: object) -> dict[str, Any]:
    """A fact's fields as JSON values."""
    if not dataclasses.is_dataclass(fact) or isinstance(fact, type):
        raise TypeError(f"not a fact: {fact!r}")
    return {item.name: _json_value(getattr(fact, item.name)) for item in dataclasses.fields(fact)}


def record_to_json(record: FactRecord) -> dict[str, Any]:
    return {"fact": record.kind, "fields": record.fields, "mono_ns": record.mono_ns, "wall_ns": record.wall_ns}


def record_from_json(data: Mapping[str, Any]) -> FactRecord:
    """The record `record_to_json` made (ValueError when something is missing or of a wrong type)."""
    try:
        kind, fields, mono_ns, wall_ns = data["fact"], data["fields"], data["mono_ns"], data["wall_ns"]
    except KeyError as missing:
        raise ValueError(f"a group fact record without {missing}") from None
    if not isinstance(kind, str) or not isinstance(fields, dict):
        raise ValueError("a group fact record needs a string `fact` and an object `fields`")
    if not isinstance(mono_ns, int) or not isinstance(wall_ns, int):
        raise ValueError("a group fact record needs integer `mono_ns` and `wall_ns`")
    return FactRecord(kind, dict(fields), mono_ns, wall_ns)


class GroupFactRecorder:
    """Records every group fact `node` publishes (and every message sent through `send`), each
    handed to `on_record` as it comes; kept in `records` too unless `keep` is False (a long run
    that streams them out)."""

    def __init__(
        self, node: Node, on_record: Callable[[FactRecord], None] | None = None, *, keep: bool = True
    ) -> None:
        self.node = node
        self.on_record = on_record
        self.keep = keep
        self.records: list[FactRecord] = []
        self.counts: Counter[str] = Counter()
        self._subscription: Subscription | None = node.events.subscribe(self._fact, *FACT_TYPES)

    def _fact(self, fact: object) -> None:
        self._record(FactRecord(type(fact).__name__, fact_fields(fact), time.monotonic_ns(), time.time_ns()))

    def _record(self, record: FactRecord) -> None:
        self.counts[record.kind] += 1
        if self.keep:
            self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def send(self, group_id: str, text: str) -> str:
        """Send `text` to the group (Node.send_group, whose errors it raises) and record it."""
        mono_ns = time.monotonic_ns()
        message_id = self.node.send_group(group_id, text)
        fields = {"group_id": group_id, "message_id": message_id, "at_s": mono_ns / 1e9}
        self._record(FactRecord(SENT, fields, mono_ns, time.time_ns()))
        return message_id

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None


# -- the figures ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailoverFigures:
    """One hub failover, seen by the members. Seconds; `*_after_crash_s` are None without a crash
    time. Per-member figures are keyed by NodeId hex."""

    group_id: str | None
    old_hub: str | None
    new_hub: str | None  # who promoted itself (the first, when several did)
    promotions: int  # HubPromoted facts replacing the old hub: 1 when all went well
    reason: str | None  # "missed_pongs", "missed_pong_and_report", "candidate_timeout"
    reports: int | None  # the reports the new hub had counted when it promoted itself
    detected_by: str | None  # the first member to see the hub gone, and how
    detection_kind: str | None  # HubUnreachableReported or HubSuspected
    detection_after_crash_s: float | None
    promotion_after_last_pong_s: float | None
    promotion_after_crash_s: float | None
    migrated_to: dict[str, str] = field(default_factory=dict)  # member -> the hub it followed
    migration_after_crash_s: dict[str, float] = field(default_factory=dict)
    migration_after_promotion_s: dict[str, float] = field(default_factory=dict)
    chain_restored_after_crash_s: float | None = None
    chain_restored_after_promotion_s: float | None = None
    first_message_after_crash_s: dict[str, float] = field(default_factory=dict)
    first_message_after_promotion_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _in_group(records: Iterable[FactRecord], group_id: str | None, kinds: tuple[str, ...]) -> list[FactRecord]:
    return [r for r in records if r.kind in kinds and (group_id is None or r.group_id == group_id)]


def _since(value: float | None, start: float | None) -> float | None:
    return None if value is None or start is None else value - start


def failover_figures(
    records_by_node: Mapping[str, Iterable[FactRecord]], *, crash_s: float | None = None,
    old_hub: str | None = None, group_id: str | None = None, clock: Clock = "monotonic",
) -> FailoverFigures:  # fmt: skip
    """The failover of `old_hub` (default: the hub the first HubPromoted replaced) in `group_id`
    (default: any), from the facts of the members (NodeId hex -> records). With `crash_s` (on
    `clock`), only what happened at or after the crash counts, and delays are taken from it."""
    by_node = {node: list(records) for node, records in records_by_node.items()}

    def after_crash(record: FactRecord) -> bool:
        return crash_s is None or record.time_s(clock) >= crash_s

    promoted = sorted(
        ((record.time_s(clock), node, record) for node, records in by_node.items()
         for record in _in_group(records, group_id, ("HubPromoted",)) if after_crash(record)),
        key=lambda item: item[0],
    )  # fmt: skip
    if old_hub is None and promoted:
        old_hub = str(promoted[0][2].fields["old_hub"])
    promoted = [item for item in promoted if old_hub is None or item[2].fields["old_hub"] == old_hub]
    promotion_s = last_pong_s = None
    new_hub = reason = reports = None
    if promoted:
        promotion_s, new_hub, fact = promoted[0]
        reason, reports = fact.fields.get("reason"), fact.fields.get("reports")
        if fact.fields.get("last_pong_s") is not None:
            last_pong_s = fact.on_clock(float(fact.fields["last_pong_s"]), clock)
        if group_id is None:
            group_id = fact.group_id

    detections = sorted(
        ((record.time_s(clock), node, record.kind) for node, records in by_node.items()
         for record in _in_group(records, group_id, DETECTION_KINDS)
         if after_crash(record) and (old_hub is None or record.fields.get("hub") == old_hub)),
        key=lambda item: item[0],
    )  # fmt: skip
    detected_s, detected_by, detection_kind = detections[0] if detections else (None, None, None)

    migrated_to: dict[str, str] = {}
    migration_s: dict[str, float] = {}
    first_message_s: dict[str, float] = {}
    chain_s: float | None = None
    for node, records in by_node.items():
        for record in _in_group(records, group_id, ("HubMigrated",)):
            if node not in migrated_to and after_crash(record) and record.fields.get("old_hub") in (old_hub, None):
                migrated_to[node] = str(record.fields["new_hub"])
                migration_s[node] = record.time_s(clock)
        for record in _in_group(records, group_id, ("FirstMessageThroughNewHub",)):
            through_new_hub = node in migrated_to and record.fields.get("hub") == migrated_to[node]
            if node not in first_message_s and after_crash(record) and through_new_hub:
                first_message_s[node] = record.time_s(clock)
        if node == new_hub:
            for record in _in_group(records, group_id, ("ChainRestored",)):
                if chain_s is None and after_crash(record):
                    chain_s = record.time_s(clock)

    def relative(times: dict[str, float], start: float | None) -> dict[str, float]:
        return {} if start is None else {node: at - start for node, at in sorted(times.items())}

    return FailoverFigures(
        group_id=group_id, old_hub=old_hub, new_hub=new_hub, promotions=len(promoted), reason=reason,
        reports=reports, detected_by=detected_by, detection_kind=detection_kind,
        detection_after_crash_s=_since(detected_s, crash_s),
        promotion_after_last_pong_s=_since(promotion_s, last_pong_s),
        promotion_after_crash_s=_since(promotion_s, crash_s),
        migrated_to=dict(sorted(migrated_to.items())),
        migration_after_crash_s=relative(migration_s, crash_s),
        migration_after_promotion_s=relative(migration_s, promotion_s),
        chain_restored_after_crash_s=_since(chain_s, crash_s),
        chain_restored_after_promotion_s=_since(chain_s, promotion_s),
        first_message_after_crash_s=relative(first_message_s, crash_s),
        first_message_after_promotion_s=relative(first_message_s, promotion_s),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class MessageCounts:
    """Messages sent by `senders`, and their deliveries to every member but their sender.
    `expected` = deliveries owed; `delivered` = (member, id) pairs that came at least once,
    `duplicated` = copies beyond the first, `lost` = expected - delivered."""

    sent: int
    expected: int
    delivered: int
    duplicated: int
    lost: int
    lost_ids: tuple[str, ...] = ()  # the messages some member never got
    duplicated_ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def message_counts(
    records_by_node: Mapping[str, Iterable[FactRecord]], *, members: Iterable[str] | None = None,
    senders: Iterable[str] | None = None, group_id: str | None = None,
) -> MessageCounts:  # fmt: skip
    """What became of the messages `senders` sent (default: the members), each owed to every one
    of `members` (default: every node given) but its sender. Deliveries of other messages (from a
    node not counted as a sender) are ignored."""
    by_node = {node: list(records) for node, records in records_by_node.items()}
    member_ids = list(by_node) if members is None else list(members)
    sender_ids = member_ids if senders is None else list(senders)
    sent: dict[str, str] = {}  # message id -> sender
    for node in sender_ids:
        for record in _in_group(by_node.get(node, ()), group_id, (SENT,)):
            sent[str(record.fields["message_id"])] = node
    expected = delivered = duplicated = 0
    lost_ids: set[str] = set()
    duplicated_ids: set[str] = set()
    for member in member_ids:
        received = Counter(
            str(record.fields["message_id"]) for record in _in_group(by_node.get(member, ()), group_id,
                                                                     ("GroupMessageReceived",))
        )  # fmt: skip
        for message_id, sender in sent.items():
            if sender == member:
                continue
            expected += 1
            copies = received.get(message_id, 0)
            if copies:
                delivered += 1
                duplicated += copies - 1
                if copies > 1:
                    duplicated_ids.add(message_id)
            else:
                lost_ids.add(message_id)
    return MessageCounts(len(sent), expected, delivered, duplicated, expected - delivered,
                         tuple(sorted(lost_ids)), tuple(sorted(duplicated_ids)))  # fmt: skip
