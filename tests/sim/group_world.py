"""Groups on the simulated network: nodes running the runtime (runtime_world.py), a group formed
among them, and what a test needs to drive it and read its facts.

`GroupWorld` forms a group hosted by its first node (a member too, like any member who created
a group on its own node) or by a pure hub (`pure_hub=True`: the hub is not a member, as the
campaign's helper node); every other node joins on invitation (auto-join). Messages are sent
through each node's runtime exactly as the real node does; every fact lands in the world's log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeVar

from tests.sim.errors import SimulationError
from tests.sim.links import Impairment
from tests.sim.runtime_world import NodeSpec, RuntimeNode, RuntimeWorld, TimedEvent
from tomproto.core.group_events import GroupJoined, GroupMessageReceived
from tomproto.core.group_settings import GroupSettings
from tomproto.core.runtime import RuntimeSettings

__all__ = ["GroupWorld", "received_by", "GROUP_NETWORK"]

T = TypeVar("T")
GROUP_NETWORK = Impairment(delay_s=0.020, jitter_s=0.005)


class GroupWorld:
    def __init__(
        self, seed: int, names: Iterable[str], *, transport: Literal["quic", "frames"] = "frames",
        impairment: Impairment | None = GROUP_NETWORK, groups: GroupSettings | None = None,
        pure_hub: bool = False,
    ) -> None:  # fmt: skip
        settings = RuntimeSettings(groups=groups or GroupSettings(), host_groups=True, auto_join_groups=True,
                                   backup=False)  # fmt: skip
        self.names = list(names)
        specs = [NodeSpec(name, settings=settings) for name in self.names]
        self.world = RuntimeWorld(seed, specs, transport=transport, impairment=impairment)
        self.hub = self.world[self.names[0]]
        self.pure_hub = pure_hub
        self.group_id = ""
        self.crashed: set[str] = set()  # nodes a test took off the network

    def __enter__(self) -> GroupWorld:
        return self

    def __exit__(self, *_: object) -> None:
        self.world.__exit__()

    def __getitem__(self, name: str) -> RuntimeNode:
        return self.world[name]

    @property
    def nodes(self) -> list[RuntimeNode]:
        return [self.world[name] for name in self.names]

    @property
    def members(self) -> list[RuntimeNode]:
        return self.nodes[1:] if self.pure_hub else self.nodes

    def form(self, limit_s: float = 30.0) -> str:
        """The first node hosts the group (or, with `pure_hub`, the second asks it to); every
        other node joins; run until every member knows every other's sender key."""
        world = self.world
        invited = [node.node_id for node in self.nodes[1:]]
        if self.pure_hub:
            creator = self.nodes[1]
            _, out = creator.runtime.groups.create("sim", creator.name, invited[1:], world.now, hub=self.hub.node_id)
            creator.carry_out(out, world.now)
            creator._poll()
        else:
            _, out = self.hub.runtime.groups.create("sim", self.hub.name, invited, world.now)
            self.hub.carry_out(out, world.now)
            self.hub._poll()
        world.run_while(lambda: not self._ready(), world.now + limit_s)
        joined = self.members[0].facts(GroupJoined)
        self.group_id = joined[0].group_id
        return self.group_id

    def _ready(self) -> bool:
        members = self.members
        for node in members:
            if not node.facts(GroupJoined):
                return False
            member = node.runtime.groups.engine.member(node.facts(GroupJoined)[0].group_id)
            if member is None or len(member.roster) != len(members):
                return False
            if any(member.keys.known_epoch(other.node_id.hex) is None for other in members if other is not node):
                return False
        return True

    def send(self, node: RuntimeNode, text: str) -> str:
        message_id, out = node.runtime.groups.send(self.group_id, text, node.now)
        node.carry_out(out, node.now)
        node._poll()
        return message_id

    def settings_of(self, node: RuntimeNode) -> RuntimeSettings:
        return node.runtime.settings

    def log(self, kind: type) -> list[TimedEvent]:
        return [entry for entry in self.world.log if isinstance(entry.event, kind)]

    def facts(self, kind: type[T]) -> list[tuple[str, T]]:
        """(node, fact) for every fact of `kind`, in the order they happened."""
        return [(entry.node, entry.event) for entry in self.world.log if isinstance(entry.event, kind)]

    def hub_of(self, node: RuntimeNode) -> str:
        member = node.runtime.groups.engine.member(self.group_id)
        if member is None:
            raise SimulationError(f"{node.name} is not a member")
        return member.hub


def received_by(node: RuntimeNode, group_id: str) -> list[GroupMessageReceived]:
    return [fact for fact in node.facts(GroupMessageReceived) if fact.group_id == group_id]

