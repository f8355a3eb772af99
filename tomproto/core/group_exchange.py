"""The runtime's side of groups: group envelopes in and out of the group engine. Part of the runtime.

Rules it enforces:
- a group payload travels in the envelope of its own type ("Group" + variant), signed, not
  encrypted at the envelope level (a group message is encrypted under its sender key; a sender
  key distribution is encrypted to each recipient);
- pings, pongs, reports and heartbeats go once and are never ACKed (their loss is what they
  detect); everything else is a tracked message, ACKed, deduplicated and resent like any other,
  except that it is never kept in the backup store: a hub is reached live or not at all (a member
  catches up by SyncRequest, a message for a dead hub goes to the next one);
- a malformed payload is refused with a reason (bad_payload), like any other;
- a member holds its hub to a budget sized for the group's fan-out (every member at the hub's
  per-sender rate) instead of the anonymous bucket; a campaign's grant is never overwritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tomproto.core.antispam import anonymous_rate_per_s
from tomproto.core.delivery import UNACKED_TYPES, DeliveryStatus
from tomproto.core.framing import FrameRefusal
from tomproto.core.group_events import (
    GroupJoined,
    GroupMessageRefused,
    GroupOutput,
    GroupRefusal,
    HubMigrated,
    HubPromoted,
    SendGroupPayload,
)
from tomproto.core.groups import Groups
from tomproto.core.runtime_events import Purpose, RefusalReason, RuntimeOutput
from tomproto.core.transport_events import Received
from tomproto.errors import DecodeError, LocalError, TomError
from tomproto.identity import NodeId
from tomproto.wire import decode_payload, encode_payload, message_type_of
from tomproto.wire.envelope import Envelope, MessageType

if TYPE_CHECKING:
    from tomproto.core.runtime import Disposition, Runtime

__all__ = ["GroupExchange", "GROUP_TYPES", "GROUP_UNRELIABLE_TYPES"]

GROUP_TYPES = frozenset(t for t in MessageType if t.value.startswith("Group"))
GROUP_UNRELIABLE_TYPES = GROUP_TYPES & UNACKED_TYPES
HUB_GRANT_S = 24 * 3600.0


class GroupExchange:
    def __init__(self, runtime: Runtime, engine: Groups) -> None:
        self.runtime = runtime
        self.engine = engine
        self._refs: dict[str, int] = {}  # tracked message id -> the engine's ref

    # -- the application (each call returns what the runtime must carry out) --------------------

    def create(
        self, name: str, username: str, members: list[NodeId], now: float, *, hub: NodeId | None = None,
        invite_only: bool = False,
    ) -> tuple[str | None, list[RuntimeOutput]]:  # fmt: skip
        """A group hosted here (its id) or on `hub` (its id comes with the GroupJoined fact)."""
        group_id, outputs = self.engine.create(name, username, members, now, hub=hub, invite_only=invite_only)
        return group_id, self._out(outputs, now)

    def join(self, group_id: str, username: str, now: float) -> list[RuntimeOutput]:
        return self._out(self.engine.join(group_id, username, now), now)

    def send(self, group_id: str, text: str, now: float) -> tuple[str, list[RuntimeOutput]]:
        message_id, outputs = self.engine.send(group_id, text, now)
        return message_id, self._out(outputs, now)

    def leave(self, group_id: str, now: float) -> list[RuntimeOutput]:
        return self._out(self.engine.leave(group_id, now), now)

    def kick(self, group_id: str, target: NodeId, now: float) -> list[RuntimeOutput]:
        return self._out(self.engine.kick(group_id, target, now), now)

    def invite(self, group_id: str, target: NodeId, now: float) -> list[RuntimeOutput]:
        return self._out(self.engine.invite(group_id, target, now), now)

    def _out(self, outputs: list[GroupOutput], now: float) -> list[RuntimeOutput]:
        out: list[RuntimeOutput] = []
        self.carry_out(outputs, now, out)
        return out

    # -- in -------------------------------------------------------------------------------------

    def decode(self, envelope: Envelope, frame: Received, now: float, out: list[RuntimeOutput]) -> object | None:
        """The group payload, or None when it is malformed (refused, counted)."""
        try:
            payload: object = decode_payload(envelope.msg_type, envelope.payload)
            return payload
        except (DecodeError, LocalError) as error:
            self.runtime.refuse(RefusalReason.bad_payload, frame, envelope, str(error), now, out)
            return None

    def unreliable(self, envelope: Envelope, sender: NodeId, frame: Received, now: float,
                   out: list[RuntimeOutput]) -> Disposition:  # fmt: skip
        payload = self.decode(envelope, frame, now, out)
        if payload is None:
            return FrameRefusal.rejected
        self.consume(payload, sender, now, out)
        return None

    def consume(self, payload: object, sender: NodeId, now: float, out: list[RuntimeOutput]) -> None:
        """A group payload, delivered once (the reliable ones deduplicated and ACKed by the
        runtime). A field the codec cannot check (a NodeId that is not a valid key, say) makes the
        engine raise: refused and counted, never an exception out of the runtime."""
        try:
            outputs = self.engine.receive(sender, payload, now)
        except (TomError, ValueError) as error:
            self.runtime.counters.refused[RefusalReason.bad_payload.value] += 1
            group_id = getattr(payload, "group_id", "")
            out.append(GroupMessageRefused(group_id if isinstance(group_id, str) else "", sender,
                                           GroupRefusal.malformed, str(error), now))  # fmt: skip
            return
        self.carry_out(outputs, now, out)

    # -- outcomes -------------------------------------------------------------------------------

    def finished(self, message_id: str, status: DeliveryStatus, now: float, out: list[RuntimeOutput]) -> None:
        if status < DeliveryStatus.delivered:
            return
        ref = self._refs.pop(message_id, None)
        if ref is not None:
            delivered = status is not DeliveryStatus.failed
            self.carry_out(self.engine.send_finished(ref, delivered, now), now, out)

    def peer_online(self, peer: NodeId, now: float, out: list[RuntimeOutput]) -> None:
        if self.engine.slots:
            self.carry_out(self.engine.peer_heard(peer, now), now, out)

    # -- out ------------------------------------------------------------------------------------

    def carry_out(self, outputs: list[GroupOutput], now: float, out: list[RuntimeOutput]) -> None:
        runtime = self.runtime
        for output in outputs:
            if not isinstance(output, SendGroupPayload):
                if isinstance(output, (GroupJoined, HubMigrated)):
                    hub = output.hub if isinstance(output, GroupJoined) else output.new_hub
                    self._grant_hub(hub, now)
                if isinstance(output, HubPromoted):
                    self._grant_members(output.group_id, now)
                out.append(output)
                continue
            msg_type = message_type_of(output.payload)
            payload = encode_payload(output.payload)
            if output.reliable:
                try:
                    message_id = runtime.send_tracked(output.peer, payload, msg_type, now, out, keep_for_offline=False)
                except LocalError:  # over the envelope cap: a send that cannot be, failed
                    if output.ref is not None:
                        self.carry_out(self.engine.send_finished(output.ref, False, now), now, out)
                    continue
                if output.ref is not None:
                    self._refs[message_id] = output.ref
            else:
                envelope, wire = runtime.seal(output.peer, msg_type, payload, now, encrypt=False)
                runtime.transmit(output.peer, wire, envelope.id, msg_type, Purpose.group, out)

    def _grant_hub(self, hub: NodeId, now: float) -> None:
        runtime = self.runtime
        if hub == runtime.me or runtime.spam.granted(hub, now) is not None:
            return
        settings = self.engine.settings
        rate = settings.max_members * settings.sender_rate_per_s + 20
        runtime.grant(hub, rate, 2 * rate, now + HUB_GRANT_S, now)

    def _grant_members(self, group_id: str, now: float) -> None:
        # Fix: once we take over, every member sends us at once what the dead hub never
        # acknowledged (a whole outage's worth, up to `max_pending`), after its SyncRequest. Held
        # to the anonymous bucket (bursts of 20), the rest was throttled and came again only at
        # its delivery deadline, 30 s later, while its sender reported us unreachable every 3 s.
        # The anonymous rate, with a burst that covers the backlog; a campaign's grant is kept.
        hub = self.engine.hub_of(group_id)
        if hub is None:
            return
        runtime = self.runtime
        rate = anonymous_rate_per_s()
        burst = 2 * rate + self.engine.settings.max_pending
        for node in hub.roster:
            peer = NodeId.parse(node)
            if peer != runtime.me and runtime.spam.granted(peer, now) is None:
                runtime.grant(peer, rate, burst, now + HUB_GRANT_S, now)

    # -- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self.engine.next_deadline()

    def handle_timer(self, now: float, out: list[RuntimeOutput]) -> None:
        deadline = self.engine.next_deadline()
        if deadline is not None and deadline <= now:
            self.carry_out(self.engine.handle_timer(now), now, out)
