"""Who may read a group, on the simulated network: a kicked member and a member who left hold no
key for what is said after the others processed their going (each sender rotates), while the
members who stay read everything; a late joiner reads what is said after it joined."""

from __future__ import annotations

import pytest

from tests.sim.group_world import GroupWorld, received_by
from tests.sim.runtime_world import RuntimeNode
from tomproto.core.group_events import GroupLeft, SenderKeyRotated
from tomproto.crypto.group_keys import open_group_message
from tomproto.errors import CryptoError
from tomproto.wire.group import GroupMessage

NAMES = ["a", "b", "c", "d", "e"]


def sealed_copy(group: GroupWorld, message_id: str) -> GroupMessage:
    """The message as the hub sequenced it (what anyone on its path could capture)."""
    hub = group.hub.runtime.groups.engine.hub_of(group.group_id)
    assert hub is not None
    return next(message for message in hub.history if message.message_id == message_id)


def cannot_read(outsider_keys: list[bytes], message: GroupMessage) -> None:
    for key in outsider_keys:
        with pytest.raises(CryptoError):
            open_group_message(message, key)


def keys_held(group: GroupWorld, node: RuntimeNode) -> list[bytes]:
    """Every sender key `node` holds for the group, its own included."""
    member = node.runtime.groups.engine.member(group.group_id)
    assert member is not None
    held = [key for peer in member.keys._peers.values() for key in peer.keys.values()]
    return [*held, member.keys.own.key]


@pytest.mark.parametrize("how", ["kicked", "left"])
def test_a_member_who_goes_cannot_read_what_is_said_after_the_others_rotated(how: str) -> None:
    with GroupWorld(3, NAMES) as group:
        group_id = group.form()
        world = group.world
        a, b, c, e = group["a"], group["b"], group["c"], group["e"]
        before = group.send(b, "before")
        world.run_for(2.0)
        assert before in [m.message_id for m in received_by(e, group_id)]
        e_keys = keys_held(group, e)
        if how == "kicked":
            out = a.runtime.groups.kick(group_id, e.node_id, world.now)  # a created the group: Admin
            a.carry_out(out, world.now)
            a._poll()
        else:
            out = e.runtime.groups.leave(group_id, world.now)
            e.carry_out(out, world.now)
            e._poll()
        world.run_for(3.0)
        assert e.runtime.groups.engine.member(group_id) is None
        assert [fact.reason for fact in e.facts(GroupLeft)] == [how]
        rotated = {entry.node for entry in group.log(SenderKeyRotated)}
        assert {"a", "b", "c", "d"} <= rotated
        after = [group.send(node, f"after, from {node.name}") for node in (a, b, c)]
        world.run_for(3.0)
        for message_id in after:
            copy = sealed_copy(group, message_id)
            cannot_read(e_keys, copy)  # every key e ever held, its own included
        assert not set(after) & {m.message_id for m in received_by(e, group_id)}
        for node in (group["b"], group["c"], group["d"]):
            got = {m.message_id for m in received_by(node, group_id)}
            assert {m for m in after if sealed_copy(group, m).sender_id != node.node_id.hex} <= got


def test_a_late_joiner_reads_what_is_said_after_it_joined() -> None:
    with GroupWorld(4, NAMES) as group:
        group.names = NAMES[:4]  # e is invited later
        group_id = group.form()
        world = group.world
        a, e = group["a"], group["e"]
        for k in range(5):  # said before e joined: not for e
            group.send(group["b"], f"before e, #{k}")
        world.run_for(2.0)
        out = a.runtime.groups.invite(group_id, e.node_id, world.now)
        a.carry_out(out, world.now)
        a._poll()
        world.run_for(3.0)
        assert e.runtime.groups.engine.member(group_id) is not None
        said = [group.send(node, f"hello e from {node.name}") for node in (a, group["b"], group["c"])]
        world.run_for(3.0)
        assert {m.message_id for m in received_by(e, group_id)} == set(said)
