"""The node's group calls (tomproto/node.py) between Nodes joined in this process by stub
endpoints (no sockets): each call carries out what the runtime says, and the group facts come
out on `events`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tomproto.core.group_events import (
    GroupInvited,
    GroupLeft,
    GroupMessageReceived,
    HubMigrated,
    HubPromoted,
    MemberLeft,
)
from tomproto.core.group_settings import GroupSettings
from tomproto.core.paths import Path, Transport
from tomproto.core.runtime import RuntimeSettings
from tomproto.core.transport_events import Received
from tomproto.errors import ConnectionLost, LocalError, TransportError
from tomproto.identity import Identity, NodeId
from tomproto.node import Node
from tomproto.transport import Sent

WAIT_S = 5.0


class Wire:
    """Stub endpoints joined in one process: a frame sent is handed to its recipient on the next
    turn of the loop; a node cut off (`cut`) neither sends nor receives (a dead machine)."""

    def __init__(self) -> None:
        self.endpoints: dict[NodeId, LinkedEndpoint] = {}
        self.cut_off: set[NodeId] = set()

    def cut(self, node: Node) -> None:
        self.cut_off.add(node.node_id)


class LinkedEndpoint:
    """What the node uses of an Endpoint."""

    def __init__(self, wire: Wire, me: NodeId) -> None:
        self.wire = wire
        self.me = me
        self.on_delivery: Any = None
        self.on_event: Any = None
        wire.endpoints[me] = self

    def send_frame_now(self, peer: NodeId, data: bytes, *, urgent: bool = False) -> Sent:
        target = self.wire.endpoints.get(peer)
        if target is None or {self.me, peer} & self.wire.cut_off:
            raise TransportError("stub: no connection")
        frame = Received(self.me, 1, data, Transport.stream, Path.direct, time.monotonic())
        asyncio.get_running_loop().call_soon(target.deliver, frame)
        return Sent(Path.direct, time.monotonic_ns())

    def deliver(self, frame: Received) -> None:
        if self.me not in self.wire.cut_off and self.on_delivery is not None:
            self.on_delivery(frame)

    async def send_frame(self, peer: NodeId, data: bytes, address: object = None) -> Sent:
        return self.send_frame_now(peer, data)

    def release(self, frame: Received, refusal: object) -> None:
        pass

    async def close(self) -> None:
        pass


def nodes(count: int, settings: RuntimeSettings) -> tuple[Wire, list[Node]]:
    """`count` nodes, in NodeId order (the first is the lowest)."""
    wire = Wire()
    identities = sorted((Identity.from_seed(bytes([index + 1]) * 32) for index in range(count)),
                        key=lambda identity: identity.node_id.hex)  # fmt: skip
    made = [Node(identity, LinkedEndpoint(wire, identity.node_id), settings) for identity in identities]  # type: ignore[arg-type]
    return wire, made


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20.0))


async def until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the nodes' state is polled, nothing signals it
            await asyncio.sleep(0.01)


def recorder(node: Node, *kinds: type) -> list[Any]:
    facts: list[Any] = []
    node.events.subscribe(facts.append, *kinds)
    return facts


def knows_everyone(node: Node, group_id: str, everyone: tuple[Node, ...]) -> bool:
    """`node` is a member that knows every other member and holds its sender key."""
    member = node.runtime.groups.engine.member(group_id)
    others = [other.node_id.hex for other in everyone if other is not node]
    return member is not None and all(
        other in member.roster and member.keys.known_epoch(other) is not None for other in others
    )


async def close_all(*to_close: Node) -> None:
    for node in to_close:
        await node.close()


MEMBERS = RuntimeSettings(auto_join_groups=True, backup=False)


def test_a_group_hosted_here_is_joined_by_invitation_and_its_messages_reach_every_member() -> None:
    async def scenario() -> None:
        _, (hub, b, c) = nodes(3, MEMBERS)
        received = {node.node_id: recorder(node, GroupMessageReceived) for node in (hub, b, c)}
        group_id = hub.create_group("team", [b.node_id, c.node_id], username="hub")
        assert group_id is not None and group_id.startswith("grp-")
        assert hub.member_groups == [group_id]
        for node in (b, c):
            joined = await node.wait_group_joined(group_id, timeout_s=WAIT_S)
            assert (joined.group_id, joined.name, joined.hub) == (group_id, "team", hub.node_id)
            assert node.member_groups == [group_id]
        # Every member knows every other's sender key before a message can be read.
        await until(lambda: all(knows_everyone(node, group_id, (hub, b, c)) for node in (hub, b, c)))
        sent = {node.node_id: node.send_group(group_id, f"from {node.node_id.hex[:8]}") for node in (hub, b, c)}
        await until(lambda: all(len(facts) == 2 for facts in received.values()))
        for node in (hub, b, c):
            got = {fact.message_id: fact for fact in received[node.node_id]}
            assert set(got) == {sent[other.node_id] for other in (hub, b, c) if other is not node}
            assert all(fact.hub == hub.node_id and fact.encrypted for fact in got.values())
        # Already a member: answered at once.
        assert (await b.wait_group_joined(group_id, timeout_s=0.1)).members == 3
        await close_all(hub, b, c)

    run(scenario)


def test_a_group_asked_of_a_remote_hub_is_known_by_its_name_until_joined() -> None:
    async def scenario() -> None:
        settings = RuntimeSettings(host_groups=True, auto_join_groups=True, backup=False)
        _, (hub, creator, guest) = nodes(3, settings)
        assert creator.create_group("remote", [guest.node_id], username="me", hub=hub.node_id) is None
        joined = await creator.wait_group_joined(name="remote", timeout_s=WAIT_S)
        assert joined.hub == hub.node_id
        assert hub.member_groups == []  # it hosts the group, it is not in it
        await guest.wait_group_joined(joined.group_id, timeout_s=WAIT_S)
        await close_all(hub, creator, guest)

    run(scenario)


def test_without_auto_join_an_invitation_is_joined_by_join_group_and_a_kicked_member_is_told() -> None:
    async def scenario() -> None:
        _, (hub, b, c) = nodes(3, RuntimeSettings(backup=False))
        invited = recorder(b, GroupInvited)
        left = recorder(c, GroupLeft)
        group_id = hub.create_group("manual", [b.node_id], username="hub")
        assert group_id is not None
        await until(lambda: bool(invited))
        with pytest.raises(LocalError):
            b.join_group("grp-unknown", "b")
        b.join_group(group_id, "b")
        await b.wait_group_joined(group_id, timeout_s=WAIT_S)
        b.invite_to_group(group_id, c.node_id)  # a member invites (the group is not invite-only)
        await until(lambda: group_id in c.runtime.groups.engine.invitations)
        c.join_group(group_id, "c")
        await c.wait_group_joined(group_id, timeout_s=WAIT_S)
        removed = recorder(b, MemberLeft)
        hub.kick_from_group(group_id, c.node_id)  # the creator is the Admin
        await until(lambda: bool(left) and bool(removed))
        assert left[0].reason == "kicked" and c.member_groups == []
        assert removed[0].node == c.node_id
        b.leave_group(group_id)
        assert b.member_groups == []
        with pytest.raises(LocalError):
            b.send_group(group_id, "not a member any more")
        await close_all(hub, b, c)

    run(scenario)


def test_the_wait_for_a_group_that_never_comes_times_out() -> None:
    async def scenario() -> None:
        _, (node,) = nodes(1, MEMBERS)
        with pytest.raises(TimeoutError):
            await node.wait_group_joined("grp-never", timeout_s=0.05)
        assert node.events._subscriptions == []  # the wait's subscription is gone
        await node.close()

    run(scenario)


def test_a_closed_node_refuses_group_calls() -> None:
    async def scenario() -> None:
        _, (node, other) = nodes(2, MEMBERS)
        group_id = node.create_group("closing", [other.node_id], username="n")
        assert group_id is not None
        await node.close()
        with pytest.raises(ConnectionLost):
            node.send_group(group_id, "too late")
        with pytest.raises(ConnectionLost):
            node.create_group("again", [], username="n")
        await other.close()

    run(scenario)


def test_when_the_hub_dies_the_shadow_takes_over_and_the_members_follow() -> None:
    fast = GroupSettings(hub_ping_interval_s=0.2, pong_grace_s=0.05, member_ack_timeout_s=0.2,
                         hub_heartbeat_interval_s=0.5, settle_timeout_s=0.2, delivery_ack_wait_s=0.2)  # fmt: skip
    settings = RuntimeSettings(auto_join_groups=True, backup=False, groups=fast)

    async def scenario() -> None:
        # The hub has the highest NodeId: the shadow is the lowest of the other three.
        wire, (shadow, b, c, hub) = nodes(4, settings)
        promoted = recorder(shadow, HubPromoted)
        migrated = {node.node_id: recorder(node, HubMigrated) for node in (shadow, b, c)}
        group_id = hub.create_group("failover", [shadow.node_id, b.node_id, c.node_id], username="hub")
        assert group_id is not None
        for node in (shadow, b, c):
            await node.wait_group_joined(group_id, timeout_s=WAIT_S)
        await until(lambda: shadow.runtime.groups.engine.slots[group_id].shadow is not None)
        # The hub dies before it forwarded the members' sender keys to each other (they joined
        # just before): each gives its key again through the new hub.
        member_b = b.runtime.groups.engine.member(group_id)
        assert member_b is not None and member_b.keys.known_epoch(c.node_id.hex) is None
        wire.cut(hub)
        await hub.close()
        await until(lambda: bool(promoted))
        assert promoted[0].old_hub == hub.node_id
        await until(lambda: all(migrated[node.node_id] for node in (shadow, b, c)))
        assert {facts[0].new_hub for facts in migrated.values()} == {shadow.node_id}
        received = recorder(b, GroupMessageReceived)
        message_id = c.send_group(group_id, "through the new hub")
        await until(lambda: any(fact.message_id == message_id for fact in received), timeout_s=2.0)  # key_wait_s: 10 s
        assert received[-1].hub == shadow.node_id and received[-1].text == "through the new hub"
        await close_all(shadow, b, c)

    run(scenario)
