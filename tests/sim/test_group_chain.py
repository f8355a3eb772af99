"""The failover chain's hard cases on the simulated network: the shadow cut off from everyone
(it takes over on its side; once the network heals there is one hub again, by the rule of
groups.py: the promoted node wins, the old hub named in its HubMigration steps down), hub and
shadow dying together (the candidate takes over after its 30 s), and the same failover over the
real QUIC transport core instead of the frame network."""

from __future__ import annotations

from tests.sim.group_world import GroupWorld, received_by
from tests.sim.partitions import Partition
from tests.sim.runtime_world import RuntimeNode
from tests.sim.test_group_failover import crash, lowest, survivors
from tomproto.core.group_events import ChainRestored, HubPromoted, HubSteppedDown

NAMES = ["a", "b", "c", "d", "e"]


def hubs(group: GroupWorld) -> list[str]:
    """The nodes that act as the group's hub."""
    return [node.name for node in group.nodes if node.runtime.groups.engine.hub_of(group.group_id) is not None]


def chatter(group: GroupWorld, nodes: list[RuntimeNode], start_s: float, count: int, every_s: float,
            sent: dict[str, list[str]]) -> None:  # fmt: skip
    for node in nodes:
        sent.setdefault(node.name, [])
        for k in range(count):
            def send(node: RuntimeNode = node, k: int = k) -> None:
                if node.name not in group.crashed:
                    sent[node.name].append(group.send(node, f"{node.name} #{k}"))

            group.world.at(start_s + k * every_s + 0.01 * NAMES.index(node.name), send)


def delivered_once_to_all(group: GroupWorld, nodes: list[RuntimeNode], sent: dict[str, list[str]]) -> None:
    for node in nodes:
        ids = [message.message_id for message in received_by(node, group.group_id)]
        assert len(ids) == len(set(ids)), f"{node.name} got a message twice"
        expected = {m for other in nodes if other is not node for m in sent.get(other.name, [])}
        assert expected <= set(ids), f"{node.name} missed {len(expected - set(ids))} of {len(expected)}"


def test_a_shadow_cut_off_takes_over_on_its_side_and_once_healed_the_group_has_one_hub_again() -> None:
    for seed in range(10):
        shadow_cut_off_then_healed(seed)


def shadow_cut_off_then_healed(seed: int) -> None:
    with GroupWorld(seed, NAMES) as group:
        group.form()
        world = group.world
        members = group.nodes
        shadow = lowest(members[1:])
        others = [node for node in members if node is not shadow]
        cut_s = world.now + 5.0
        cuts: list[Partition] = []

        def cut_off() -> None:
            cuts.extend(world.cut(shadow, other) for other in others)

        def heal() -> None:
            for partition in cuts:
                partition.lift()

        world.at(cut_s, cut_off)
        world.at(cut_s + 20.0, heal)
        sent: dict[str, list[str]] = {}
        chatter(group, others, cut_s + 1.0, 30, 1.0, sent)
        world.run_until(cut_s + 15.0)
        assert sorted(hubs(group)) == sorted(["a", shadow.name]), f"seed {seed}: the shadow did not take over"
        world.run_until(cut_s + 80.0)
        assert hubs(group) == [shadow.name], f"seed {seed}: {hubs(group)} act as hub once healed"
        assert {group.hub_of(node) for node in members} == {shadow.node_id.hex}, f"seed {seed}"
        assert [entry.node for entry in group.log(HubSteppedDown)] == ["a"]
        delivered_once_to_all(group, others, sent)


def test_when_hub_and_shadow_die_together_the_candidate_takes_over_after_its_timeout() -> None:
    for seed in range(10):
        hub_and_shadow_die(seed)


def hub_and_shadow_die(seed: int) -> None:
    with GroupWorld(seed, NAMES) as group:
        group.form()
        world = group.world
        shadow = lowest(group.nodes[1:])
        candidate = lowest([node for node in group.nodes[1:] if node is not shadow])
        crash_s = world.now + 5.0
        world.at(crash_s, lambda: crash(group, group.hub, shadow))
        sent: dict[str, list[str]] = {}
        alive = [node for node in group.nodes if node not in (group.hub, shadow)]
        chatter(group, alive, crash_s - 1.0, 10, 1.0, sent)
        world.run_until(crash_s + 60.0)
        promoted = group.facts(HubPromoted)
        assert [name for name, _ in promoted] == [candidate.name], f"seed {seed}: {promoted}"
        event = promoted[0][1]
        assert event.reason == "candidate_timeout"
        # The candidate's clock starts with the first member's report (3 s after the crash at most).
        assert 30.0 <= event.at_s - crash_s <= 35.0, f"seed {seed}: {event.at_s - crash_s:.1f} s"
        assert {group.hub_of(node) for node in survivors(group)} == {candidate.node_id.hex}
        (_, restored), = group.facts(ChainRestored)
        dead = {group.hub.node_id, shadow.node_id}
        assert restored.shadow is not None and restored.shadow not in dead, f"seed {seed}: a dead shadow elected"
        assert restored.candidate not in dead
        delivered_once_to_all(group, survivors(group), sent)


def test_the_failover_works_the_same_over_the_quic_transport_core() -> None:
    with GroupWorld(7, NAMES, transport="quic") as group:
        group.form()
        world = group.world
        shadow = lowest(group.nodes[1:])
        crash_s = world.now + 7.0
        sent: dict[str, list[str]] = {}
        chatter(group, group.nodes, crash_s - 2.0, 8, 1.0, sent)
        world.at(crash_s, lambda: crash(group))
        world.run_until(crash_s + 30.0)
        promoted = [name for name, _ in group.facts(HubPromoted)]
        assert promoted == [shadow.name]
        assert {group.hub_of(node) for node in survivors(group)} == {shadow.node_id.hex}
        delivered_once_to_all(group, survivors(group), sent)
