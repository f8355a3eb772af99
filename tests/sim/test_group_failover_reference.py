"""Hub failover on the simulated network at the real-process test's pace: the hub of a four-node
group dies (its machine gone, as kill -9), the shadow takes over, and the group goes on. These
are the reference figures the process test (tests/integration/test_group_failover_processes.py)
is held to: promotion 3.5 s after the last pong when members report the hub, 6.5 s when nobody
does."""

from __future__ import annotations

from collections import Counter

from tests.sim.group_world import GroupWorld, received_by
from tests.sim.runtime_world import RuntimeNode
from tomproto.core.group_events import (
    ChainRestored,
    FirstMessageThroughNewHub,
    GroupMessageConfirmed,
    GroupMessageRefused,
    HubMigrated,
    HubPromoted,
)

CHATTER_S = 0.2  # each member's pace: the hub's per-sender rate (5/s), the campaign's helper case


def chatter(
    group: GroupWorld, nodes: list[RuntimeNode], alive: set[str], interval_s: float
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Each node sends a message every `interval_s` while it is in `alive`: the ids each sent,
    and when each was sent."""
    world = group.world
    sent: dict[str, list[str]] = {node.name: [] for node in nodes}
    sent_at: dict[str, float] = {}

    def tick(node: RuntimeNode) -> None:
        if node.name not in alive:
            return
        message_id = group.send(node, f"{node.name} at {world.now:.2f}")
        sent[node.name].append(message_id)
        sent_at[message_id] = world.now
        world.at(world.now + interval_s, lambda: tick(node))

    for index, node in enumerate(nodes):
        world.at(world.now + 0.05 * index, lambda node=node: tick(node))  # type: ignore[misc]
    return sent, sent_at


def test_with_members_chattering_the_shadow_takes_over_at_the_last_pong_plus_3_5_s_and_nothing_is_lost() -> None:
    with GroupWorld(1, "abcd") as group:
        group_id = group.form()
        world = group.world
        members = group.nodes[1:]
        alive = {node.name for node in group.nodes}
        sent, sent_at = chatter(group, group.nodes, alive, CHATTER_S)
        world.run_for(3.0)
        crash_s = world.now
        alive.discard("a")
        world.remove(group["a"])
        world.run_for(12.0)
        alive.clear()
        world.run_for(5.0)  # the last messages settle

        shadow = min(members, key=lambda node: node.node_id.hex)
        promoted = [(node, fact) for node in members for fact in node.facts(HubPromoted)]
        assert [(node.name, fact.reason) for node, fact in promoted] == [(shadow.name, "missed_pong_and_report")]
        fact = promoted[0][1]
        assert fact.last_pong_s is not None
        assert abs(fact.at_s - fact.last_pong_s - 3.5) < 0.05
        assert fact.at_s - crash_s < 3.0 + CHATTER_S + 1.0
        assert shadow.facts(ChainRestored)
        for node in members:
            (migrated,) = node.facts(HubMigrated)
            assert migrated.new_hub == shadow.node_id
            (first,) = node.facts(FirstMessageThroughNewHub)
            assert first.at_s - fact.at_s < 1.0
            assert node.facts(GroupMessageRefused) == []
            # Every message of the three members reached the other two, once; each sender holds
            # its hub's DeliveryAck for every one of them.
            received = Counter(message.message_id for message in received_by(node, group_id))
            assert set(received.values()) == {1}
            for other in members:
                if other is not node:
                    assert set(sent[other.name]) <= set(received)
            # Once the group settled on its new hub, nothing waits: not even at the new hub, a
            # member too, which gets its own messages back in their place in the order.
            for message in received_by(node, group_id):
                if sent_at[message.message_id] > fact.at_s + 1.0:
                    assert message.at_s - sent_at[message.message_id] < 0.5, node.name
            confirmed = {confirmation.message_id for confirmation in node.facts(GroupMessageConfirmed)}
            assert confirmed == set(sent[node.name])  # what the dead hub left was resent, and acknowledged
            member = node.runtime.groups.engine.member(group_id)
            assert member is not None and not member.pending


def test_with_a_quiet_group_the_shadow_takes_over_at_the_last_pong_plus_6_5_s() -> None:
    with GroupWorld(4, "abcd") as group:
        group.form()
        world = group.world
        world.run_for(2.0)
        world.remove(group["a"])
        world.run_for(10.0)
        members = group.nodes[1:]
        shadow = min(members, key=lambda node: node.node_id.hex)
        promoted = [(node, fact) for node in members for fact in node.facts(HubPromoted)]
        assert [(node.name, fact.reason) for node, fact in promoted] == [(shadow.name, "missed_pongs")]
        fact = promoted[0][1]
        assert fact.last_pong_s is not None
        assert abs(fact.at_s - fact.last_pong_s - 6.5) < 0.05
        for node in members:
            assert [migrated.new_hub for migrated in node.facts(HubMigrated)] == [shadow.node_id]
