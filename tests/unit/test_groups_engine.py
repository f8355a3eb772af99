"""The group engine (tomproto/core/groups.py): two or three `Groups` engines wired by an in-memory
loop (each SendGroupPayload goes to the engine of its peer, signed by its sender; a reliable send
with a ref is reported delivered), no runtime, no network. A node hosts a group and invites the
others, who join on their own; messages reach every other member once; a kicked member leaves and
the others' new sender keys are not its; hosting for others needs host_groups; a HubMigration
counts only when signed by its new hub."""

from __future__ import annotations

import random
from collections import deque

from tomproto.core.group_events import (
    GroupEvent,
    GroupJoined,
    GroupLeft,
    GroupMessageConfirmed,
    GroupMessageReceived,
    GroupMessageRefused,
    GroupOutput,
    GroupRefusal,
    HubMigrated,
    SenderKeyRotated,
    SendGroupPayload,
)
from tomproto.core.group_settings import GroupSettings
from tomproto.core.groups import Groups
from tomproto.identity import Identity, NodeId
from tomproto.wire.group import GroupHubMigration, GroupSenderKeyDistribution

SETTINGS = GroupSettings()


def wall_ms(now: float) -> int:
    return int((1.7e9 + now) * 1000)


class Loop:
    """Engines by NodeId; every payload delivered at once, in the order it was sent."""

    def __init__(self, count: int, *, host_groups: bool = False) -> None:
        self.identities = [Identity.from_seed(bytes([i]) * 32) for i in range(1, count + 1)]
        self.engines: dict[NodeId, Groups] = {
            identity.node_id: Groups(identity, SETTINGS, random_bytes=random.Random(i).randbytes, wall_ms=wall_ms,
                                     host_groups=host_groups, auto_join=True)
            for i, identity in enumerate(self.identities)
        }
        self.facts: dict[NodeId, list[GroupEvent]] = {node: [] for node in self.engines}
        self.now = 0.0
        self.sent: list[tuple[NodeId, SendGroupPayload]] = []

    def node(self, index: int) -> NodeId:
        return self.identities[index].node_id

    def engine(self, index: int) -> Groups:
        return self.engines[self.node(index)]

    def feed(self, origin: NodeId, outputs: list[GroupOutput]) -> None:
        queue: deque[tuple[NodeId, GroupOutput]] = deque((origin, o) for o in outputs)
        for _ in range(100_000):
            if not queue:
                return
            sender, output = queue.popleft()
            if not isinstance(output, SendGroupPayload):
                self.facts[sender].append(output)
                continue
            assert output.peer != sender, "a payload to ourselves is handled inside the engine"
            self.sent.append((sender, output))
            peer = output.peer
            queue.extend((peer, o) for o in self.engines[peer].receive(sender, output.payload, self.now))
            if output.reliable and output.ref is not None:
                queue.extend((sender, o) for o in self.engines[sender].send_finished(output.ref, True, self.now))
        raise AssertionError("the engines keep talking")

    def advance(self, to_s: float) -> None:
        """Run every engine's timers up to `to_s`."""
        for _ in range(100_000):
            due = [(d, node) for node, e in self.engines.items() if (d := e.next_deadline()) is not None]
            deadline, node = min(due, default=(float("inf"), None))
            if node is None or deadline > to_s:
                self.now = to_s
                return
            self.now = max(self.now, deadline)
            self.feed(node, self.engines[node].handle_timer(self.now))
        raise AssertionError("a deadline did not move")

    def of(self, index: int, kind: type) -> list:
        return [fact for fact in self.facts[self.node(index)] if isinstance(fact, kind)]

    def form(self, invited: int) -> str:
        """Node 0 hosts a group and invites nodes 1..invited, which join on their own."""
        group_id, outputs = self.engine(0).create("friends", "host", [self.node(i) for i in range(1, invited + 1)],
                                                  self.now)  # fmt: skip
        assert group_id is not None
        self.feed(self.node(0), outputs)
        return group_id


def texts(loop: Loop, index: int) -> list[tuple[NodeId, str]]:
    return [(fact.sender, fact.text) for fact in loop.of(index, GroupMessageReceived)]


def test_an_invited_node_joins_both_hold_each_others_key_and_messages_cross_once() -> None:
    loop = Loop(2)
    host, guest = loop.node(0), loop.node(1)
    group_id = loop.form(invited=1)
    joined = loop.of(1, GroupJoined)
    assert [(j.group_id, j.hub, j.members) for j in joined] == [(group_id, host, 2)]
    host_member, guest_member = loop.engine(0).member(group_id), loop.engine(1).member(group_id)
    assert host_member is not None and guest_member is not None
    assert host_member.keys.key_for(guest.hex, 1, loop.now) == guest_member.keys.own.key
    assert guest_member.keys.key_for(host.hex, 1, loop.now) == host_member.keys.own.key

    loop.now = 1.0
    _, out = loop.engine(0).send(group_id, "hello from the host", loop.now)
    loop.feed(host, out)
    loop.now = 1.5
    _, out = loop.engine(1).send(group_id, "hello from the guest", loop.now)
    loop.feed(guest, out)
    loop.advance(30.0)  # every timer that falls due meanwhile (pings, heartbeats, gaps) has run
    assert texts(loop, 1) == [(host, "hello from the host")]
    assert texts(loop, 0) == [(guest, "hello from the guest")]
    assert all(fact.encrypted for fact in loop.of(1, GroupMessageReceived) + loop.of(0, GroupMessageReceived))
    assert len(loop.of(0, GroupMessageConfirmed)) == 1 and len(loop.of(1, GroupMessageConfirmed)) == 1


def test_the_host_receives_at_once_what_follows_its_own_message() -> None:
    # The host is the hub and a member: its own message comes back to its member part (the
    # echo, its place in the order), so what the guest says next is no gap to wait on.
    loop = Loop(2)
    host, guest = loop.node(0), loop.node(1)
    group_id = loop.form(invited=1)
    loop.now = 1.0
    loop.feed(host, loop.engine(0).send(group_id, "first", loop.now)[1])
    loop.feed(guest, loop.engine(1).send(group_id, "second", loop.now)[1])
    assert texts(loop, 0) == [(guest, "second")]  # delivered at once, not after a gap wait
    host_member = loop.engine(0).member(group_id)
    assert host_member is not None and host_member.next_seq == 3 and host_member.skipped == 0


def test_a_kicked_member_leaves_and_the_others_rotate_to_a_key_it_never_gets() -> None:
    loop = Loop(3)
    host, stays, kicked = loop.node(0), loop.node(1), loop.node(2)
    group_id = loop.form(invited=2)
    assert len(loop.of(1, GroupJoined)) == 1 and len(loop.of(2, GroupJoined)) == 1
    kicked_keys = loop.engine(2).member(group_id)
    assert kicked_keys is not None
    assert kicked_keys.keys.known_epoch(host.hex) == 1 and kicked_keys.keys.known_epoch(stays.hex) == 1

    loop.now = 2.0
    loop.feed(host, loop.engine(0).kick(group_id, kicked, loop.now))
    assert [(fact.group_id, fact.reason) for fact in loop.of(2, GroupLeft)] == [(group_id, "kicked")]
    assert loop.engine(2).member(group_id) is None
    for index in (0, 1):
        assert [(r.epoch, r.reason) for r in loop.of(index, SenderKeyRotated)] == [(2, "member_left")]
    host_member, stays_member = loop.engine(0).member(group_id), loop.engine(1).member(group_id)
    assert host_member is not None and stays_member is not None
    assert host_member.keys.key_for(stays.hex, 2, loop.now) == stays_member.keys.own.key
    assert stays_member.keys.key_for(host.hex, 2, loop.now) == host_member.keys.own.key
    for owner in (host, stays):
        assert kicked_keys.keys.key_for(owner.hex, 2, loop.now) is None
        assert kicked_keys.keys.known_epoch(owner.hex) == 1
    to_kicked = [p.payload for _, p in loop.sent if p.peer == kicked]
    assert not [d for d in to_kicked if isinstance(d, GroupSenderKeyDistribution) and d.epoch == 2]

    loop.feed(stays, loop.engine(1).send(group_id, "after the kick", loop.now)[1])
    assert texts(loop, 0) == [(stays, "after the kick")]
    assert texts(loop, 2) == []


def test_a_group_create_to_a_node_that_hosts_no_groups_is_refused() -> None:
    loop = Loop(2)
    asker, refuser = loop.node(0), loop.node(1)
    group_id, out = loop.engine(0).create("elsewhere", "asker", [], loop.now, hub=refuser)
    assert group_id is None
    loop.feed(asker, out)
    refused = loop.of(1, GroupMessageRefused)
    assert [(r.sender, r.reason) for r in refused] == [(asker, GroupRefusal.not_hub)]
    assert loop.engine(1).slots == {} and loop.of(0, GroupJoined) == []

    hosting = Loop(2, host_groups=True)
    _, out = hosting.engine(0).create("elsewhere", "asker", [], hosting.now, hub=hosting.node(1))
    hosting.feed(hosting.node(0), out)
    assert [(j.hub, j.members) for j in hosting.of(0, GroupJoined)] == [(hosting.node(1), 1)]


def test_a_hub_migration_not_signed_by_its_new_hub_is_refused() -> None:
    loop = Loop(3)
    host, other = loop.node(0), loop.node(2)
    group_id = loop.form(invited=2)
    notice = GroupHubMigration(group_id, other.hex, host.hex)
    out = loop.engine(1).receive(host, notice, 1.0)  # the new hub is `other`; the old hub signed it
    refused = [fact for fact in out if isinstance(fact, GroupMessageRefused)]
    assert [(r.sender, r.reason) for r in refused] == [(host, GroupRefusal.malformed)]
    assert not [fact for fact in out if isinstance(fact, HubMigrated)]
    followed = loop.engine(1).member(group_id)
    assert followed is not None and followed.hub == host.hex
    out = loop.engine(1).receive(other, notice, 1.1)  # signed by the new hub itself: followed
    assert [(m.old_hub, m.new_hub) for m in out if isinstance(m, HubMigrated)] == [(host, other)]
    assert followed.hub == other.hex


def test_a_member_kicked_after_being_shadow_cannot_claim_the_hub() -> None:
    loop = Loop(4)
    host = loop.node(0)
    group_id = loop.form(invited=3)
    hub = loop.engine(0).hub_of(group_id)
    assert hub is not None and hub.shadow is not None
    shadow = NodeId.parse(hub.shadow)
    loop.now = 1.0
    loop.feed(host, loop.engine(0).kick(group_id, shadow, loop.now))
    notice = GroupHubMigration(group_id, shadow.hex, host.hex)
    for index in range(4):
        node = loop.node(index)
        if node == shadow:
            continue
        out = loop.engine(index).receive(shadow, notice, 2.0)
        assert not [fact for fact in out if isinstance(fact, HubMigrated)], f"node {index} followed the kicked node"
        member = loop.engine(index).member(group_id)
        assert member is not None and member.hub == host.hex
    assert loop.engine(0).hub_of(group_id) is not None  # the hub did not step down


def test_messages_the_hub_refused_over_its_rate_are_sent_again_and_numbered() -> None:
    loop = Loop(2)
    guest = loop.node(1)
    group_id = loop.form(invited=1)
    loop.now = 1.0
    for k in range(14):  # the hub takes 10 at once (its burst), then 5 a second
        loop.feed(guest, loop.engine(1).send(group_id, f"#{k}", loop.now)[1])
    refused = [fact for fact in loop.of(0, GroupMessageRefused) if fact.reason is GroupRefusal.rate_limited]
    assert len(refused) == 4
    loop.advance(20.0)  # the guest's ack timeout sends the unacknowledged ones again
    assert [text for _, text in texts(loop, 0)] == [f"#{k}" for k in range(14)]
    assert len(loop.of(1, GroupMessageConfirmed)) == 14
    member = loop.engine(1).member(group_id)
    assert member is not None and not member.pending
