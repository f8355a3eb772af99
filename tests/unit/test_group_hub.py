"""One group seen by its hub (tomproto/core/group_hub.py), driven directly: each check on a
submitted message and its refusal reason, sequencing and fan-out, when the sender's DeliveryAck
goes, passing over an unreachable member and replaying what it missed, membership rules, and the
settling of a hub that took over."""

from __future__ import annotations

import dataclasses
import random

import pytest

from tomproto.core.group_events import GroupMessageRefused, GroupOutput, GroupRefusal, MemberJoined, SendGroupPayload
from tomproto.core.group_hub import HubConfig, HubGroup
from tomproto.core.group_settings import GroupSettings
from tomproto.crypto.group_keys import seal_group_message
from tomproto.identity import Identity, NodeId
from tomproto.wire.group import (
    GroupCandidateAssigned,
    GroupDeliveryAck,
    GroupHubShadowSync,
    GroupInvite,
    GroupMember,
    GroupMemberLeft,
    GroupMemberRole,
    GroupMemberRoleChanged,
    GroupMessage,
    GroupSync,
    GroupSyncResponse,
    LeaveReason,
)

SETTINGS = GroupSettings()
GROUP_ID = "grp-00000000-0000-4000-8000-000000000002"
HUB = Identity.from_seed(bytes([1]) * 32)
A = Identity.from_seed(bytes([2]) * 32)  # Admin; lowest NodeId of the members: the shadow
B = Identity.from_seed(bytes([3]) * 32)
C = Identity.from_seed(bytes([4]) * 32)  # the candidate
OUTSIDER = Identity.from_seed(bytes([5]) * 32)
SENDER_KEY = bytes([0x5E]) * 32


def wall_ms(now: float) -> int:
    return int((1.7e9 + now) * 1000)


def member(identity: Identity, role: GroupMemberRole = GroupMemberRole.Member) -> GroupMember:
    return GroupMember(identity.node_id.hex, identity.node_id.hex[:6], wall_ms(0.0), role)


def make_hub(*, invite_only: bool = False, members: list[GroupMember] | None = None, seq: int = 0) -> HubGroup:
    roster = members or [member(A, GroupMemberRole.Admin), member(B), member(C)]
    config = HubConfig(GROUP_ID, "test", A.node_id.hex, wall_ms(0.0), invite_only)
    hub = HubGroup(HUB.node_id.hex, config, {m.node_id: m for m in roster}, SETTINGS, 0.0, wall_ms=wall_ms, seq=seq)
    if members is None:
        assert (hub.shadow, hub.candidate) == (A.node_id.hex, C.node_id.hex)
    return hub


_rng = random.Random(5)


def sealed(sender: Identity, text: str = "hi", *, sent_at_s: float = 0.0) -> GroupMessage:
    return seal_group_message(
        sender, group_id=GROUP_ID, message_id=str(_rng.randbytes(16).hex()), username="", text=text,
        sent_at_ms=wall_ms(sent_at_s), sender_key=SENDER_KEY, key_epoch=1, random_bytes=_rng.randbytes,
    )  # fmt: skip


def submit(hub: HubGroup, message: GroupMessage, now: float, sender: Identity | None = None) -> list[GroupOutput]:
    out: list[GroupOutput] = []
    hub.submitted(message, (sender or _identity_of(message)).node_id.hex, now, out)
    return out


def _identity_of(message: GroupMessage) -> Identity:
    return next(i for i in (A, B, C, OUTSIDER) if i.node_id.hex == message.sender_id)


def sends(out: list[GroupOutput], kind: type) -> list[SendGroupPayload]:
    return [o for o in out if isinstance(o, SendGroupPayload) and isinstance(o.payload, kind)]


def refusals(out: list[GroupOutput]) -> list[GroupRefusal]:
    return [e.reason for e in out if isinstance(e, GroupMessageRefused)]


def copies(out: list[GroupOutput]) -> dict[NodeId, SendGroupPayload]:
    found = sends(out, GroupMessage)
    by_peer = {s.peer: s for s in found}
    assert len(by_peer) == len(found), "one copy per member"
    return by_peer


def acks(out: list[GroupOutput]) -> list[tuple[NodeId, str]]:
    return [(s.peer, s.payload.message_id) for s in sends(out, GroupDeliveryAck)]


# -- the checks on a submitted message ----------------------------------------------------------


def test_a_message_from_a_non_member_is_refused() -> None:
    hub = make_hub()
    out = submit(hub, sealed(OUTSIDER), 0.0)
    assert refusals(out) == [GroupRefusal.not_member]
    assert not sends(out, GroupMessage) and hub.seq == 0


def test_a_tampered_message_is_refused_for_its_signature() -> None:
    hub = make_hub()
    good = sealed(A)
    tampered = dataclasses.replace(good, ciphertext=good.ciphertext[:-1] + bytes([good.ciphertext[-1] ^ 0x01]))
    out = submit(hub, tampered, 0.0)
    assert refusals(out) == [GroupRefusal.bad_signature]
    assert not sends(out, GroupMessage) and hub.seq == 0
    assert refusals(submit(hub, good, 0.0)) == [] and hub.seq == 1


@pytest.mark.parametrize(
    ("offset_s", "refusal"),
    [(-360.0, GroupRefusal.stale), (-299.0, None), (31.0, GroupRefusal.from_the_future), (29.0, None)],
    ids=["6-min-old", "just-fresh", "31-s-ahead", "29-s-ahead"],
)
def test_freshness_of_sent_at(offset_s: float, refusal: GroupRefusal | None) -> None:
    hub = make_hub()
    now = 1000.0
    out = submit(hub, sealed(A, sent_at_s=now + offset_s), now)
    if refusal is None:
        assert refusals(out) == [] and hub.seq == 1
    else:
        assert refusals(out) == [refusal]
        assert not sends(out, GroupMessage) and hub.seq == 0


def test_the_eleventh_message_in_one_instant_is_rate_limited_and_more_pass_a_second_later() -> None:
    hub = make_hub()
    now = 10.0
    outcomes = [refusals(submit(hub, sealed(B, f"m{i}", sent_at_s=now), now)) for i in range(11)]
    assert outcomes == [[]] * 10 + [[GroupRefusal.rate_limited]]
    assert hub.seq == 10
    assert refusals(submit(hub, sealed(A, sent_at_s=now), now)) == []  # per sender: A is not limited
    later = now + 1.0  # 5 a second
    outcomes = [refusals(submit(hub, sealed(B, f"n{i}", sent_at_s=later), later)) for i in range(6)]
    assert outcomes == [[]] * 5 + [[GroupRefusal.rate_limited]]
    assert hub.seq == 16


def test_a_duplicate_message_id_is_not_sequenced_twice_and_is_acknowledged_again() -> None:
    hub = make_hub()
    message = sealed(A)
    out = submit(hub, message, 0.0)
    assert hub.seq == 1
    again = submit(hub, message, 0.1)  # its DeliveryAck is not due yet: nothing to say
    assert again == [] and hub.seq == 1
    for copy in copies(out).values():
        if copy.ref is not None:
            hub.copy_finished(copy.ref, True, 0.2, [])
    # The sender did not get the DeliveryAck and sends again: the same id is acknowledged again.
    again = submit(hub, message, 1.0)
    assert not sends(again, GroupMessage) and hub.seq == 1 and hub.sequenced == 1
    assert acks(again) == [(A.node_id, message.message_id)]
    assert refusals(again) == []


# -- sequencing ---------------------------------------------------------------------------------


def test_each_message_is_numbered_one_up_and_every_member_gets_a_copy_the_sender_its_echo() -> None:
    hub = make_hub()
    for expected_seq, sender in enumerate((A, B, C, A), start=1):
        message = sealed(sender, f"m{expected_seq}")
        out = submit(hub, message, 0.0)
        by_peer = copies(out)
        assert set(by_peer) == {A.node_id, B.node_id, C.node_id}
        assert all(s.payload.seq == expected_seq and s.payload.message_id == message.message_id
                   for s in by_peer.values())  # fmt: skip
        assert all(s.reliable for s in by_peer.values())
        echo = by_peer[sender.node_id]
        assert echo.ref is None  # the echo: no DeliveryAck waits on it
        assert all(s.ref is not None for peer, s in by_peer.items() if peer != sender.node_id)
        assert hub.history[-1].seq == expected_seq
    assert hub.seq == 4


def test_the_history_keeps_the_last_100_messages() -> None:
    hub = make_hub()
    now = 0.0
    for i in range(120):
        now = i * 0.25  # under every sender's rate
        submit(hub, sealed((A, B, C)[i % 3], f"m{i}", sent_at_s=now), now)
    assert hub.seq == 120
    assert len(hub.history) == 100
    assert [m.seq for m in hub.history] == list(range(21, 121))
    out: list[GroupOutput] = []
    hub.sync_requested(B.node_id.hex, 0, now, out)
    response = sends(out, GroupSyncResponse)[0].payload
    assert [m.seq for m in response.messages] == list(range(21, 121)) and response.latest_seq == 120


# -- the sender's DeliveryAck -------------------------------------------------------------------


def test_the_delivery_ack_goes_once_every_other_members_copy_is_delivered() -> None:
    hub = make_hub()
    message = sealed(A)
    out = submit(hub, message, 0.0)
    assert acks(out) == []
    by_peer = copies(out)
    out = []
    assert hub.copy_finished(by_peer[B.node_id].ref or 0, True, 0.1, out)
    assert acks(out) == []  # C has not got its copy yet
    hub.copy_finished(by_peer[C.node_id].ref or 0, True, 0.2, out)
    assert acks(out) == [(A.node_id, message.message_id)]
    out = []
    hub.handle_timer(SETTINGS.delivery_ack_wait_s + 1.0, out)
    assert acks(out) == []  # once only
    assert not hub.copy_finished(12345, True, 0.3, out)  # not a ref of ours


def test_the_delivery_ack_goes_after_the_wait_when_copies_are_still_out() -> None:
    hub = make_hub()
    message = sealed(B)
    submit(hub, message, 1.0)
    assert hub.next_deadline() == 1.0 + SETTINGS.delivery_ack_wait_s
    out: list[GroupOutput] = []
    hub.handle_timer(1.0 + SETTINGS.delivery_ack_wait_s - 0.001, out)
    assert acks(out) == []
    hub.handle_timer(1.0 + SETTINGS.delivery_ack_wait_s, out)
    assert acks(out) == [(B.node_id, message.message_id)]
    assert SETTINGS.delivery_ack_wait_s == 2.0


def test_a_member_whose_copy_failed_is_passed_over_and_later_gets_what_it_missed() -> None:
    hub = make_hub()
    first = sealed(A, "first")
    by_peer = copies(submit(hub, first, 0.0))
    out: list[GroupOutput] = []
    hub.copy_finished(by_peer[C.node_id].ref or 0, False, 0.5, out)  # C, the candidate, is unreachable
    assert C.node_id.hex in hub.passed_over
    assert (hub.shadow, hub.candidate) == (A.node_id.hex, B.node_id.hex)  # out of the chain
    assert [s.peer for s in sends(out, GroupCandidateAssigned)] == [B.node_id]
    assert C.node_id not in {s.peer for s in out if isinstance(s, SendGroupPayload)}
    hub.copy_finished(by_peer[B.node_id].ref or 0, True, 0.6, out)
    assert acks(out) == [(A.node_id, first.message_id)]  # the ACK does not wait for C

    second, third = sealed(A, "second", sent_at_s=1.0), sealed(B, "third", sent_at_s=1.0)
    out = submit(hub, second, 1.0) + submit(hub, third, 1.0)
    assert C.node_id not in {s.peer for s in sends(out, GroupMessage)}  # no more copies to C

    out = []
    hub.heard_from(C.node_id.hex, 2.0, out)
    replayed = [s.payload for s in sends(out, GroupMessage) if s.peer == C.node_id]
    assert [(m.message_id, m.seq) for m in replayed] == [(first.message_id, 1), (second.message_id, 2),
                                                         (third.message_id, 3)]  # fmt: skip
    assert C.node_id.hex not in hub.passed_over and hub.candidate == C.node_id.hex
    out = []
    hub.heard_from(C.node_id.hex, 3.0, out)
    assert out == []  # nothing twice
    assert set(copies(submit(hub, sealed(B, "fourth", sent_at_s=4.0), 4.0))) == {A.node_id, B.node_id, C.node_id}


# -- membership ---------------------------------------------------------------------------------


def join(hub: HubGroup, identity: Identity, now: float) -> list[GroupOutput]:
    out: list[GroupOutput] = []
    hub.join(identity.node_id.hex, "newcomer", now, out)
    return out


def test_a_group_is_full_at_50_members() -> None:
    people = [Identity.from_seed(bytes([i]) * 32) for i in range(10, 61)]
    roster = [member(p, GroupMemberRole.Admin if i == 0 else GroupMemberRole.Member) for i, p in enumerate(people[:49])]
    hub = make_hub(members=roster)
    out = join(hub, people[49], 0.0)
    assert refusals(out) == [] and len(hub.roster) == 50  # the 50th joins
    assert [e.node for e in out if isinstance(e, MemberJoined)] == [people[49].node_id]
    out = join(hub, people[50], 0.0)
    assert refusals(out) == [GroupRefusal.group_full]
    assert len(hub.roster) == 50 and people[50].node_id.hex not in hub.roster


def test_an_invite_only_group_is_joined_by_invitation_only() -> None:
    hub = make_hub(invite_only=True)
    out = join(hub, OUTSIDER, 0.0)
    assert refusals(out) == [GroupRefusal.not_invited] and OUTSIDER.node_id.hex not in hub.roster
    out = []
    hub.invite(B.node_id.hex, OUTSIDER.node_id.hex, 0.0, out)  # B is no Admin
    assert refusals(out) == [GroupRefusal.not_admin] and not sends(out, GroupInvite)
    hub.invite(A.node_id.hex, OUTSIDER.node_id.hex, 0.0, out)
    assert [s.peer for s in sends(out, GroupInvite)] == [OUTSIDER.node_id]
    out = join(hub, OUTSIDER, 1.0)
    assert refusals(out) == [] and OUTSIDER.node_id.hex in hub.roster
    assert OUTSIDER.node_id in {s.peer for s in sends(out, GroupSync)}  # its view of the group
    assert OUTSIDER.node_id.hex not in hub.invites  # the invitation is used up


def test_an_invitation_expires_after_24_hours() -> None:
    hub = make_hub(invite_only=True)
    hub.invite(A.node_id.hex, OUTSIDER.node_id.hex, 0.0, [])
    assert refusals(join(hub, OUTSIDER, SETTINGS.invite_ttl_s)) == [GroupRefusal.not_invited]


def test_kicking_and_changing_roles_need_an_admin() -> None:
    hub = make_hub()
    out: list[GroupOutput] = []
    hub.kick(B.node_id.hex, C.node_id.hex, 0.0, out)
    assert refusals(out) == [GroupRefusal.not_admin] and C.node_id.hex in hub.roster
    assert not sends(out, GroupMemberLeft)
    out = []
    hub.set_role(B.node_id.hex, B.node_id.hex, GroupMemberRole.Admin, 0.0, out)
    assert refusals(out) == [GroupRefusal.not_admin]
    assert hub.roster[B.node_id.hex].role is GroupMemberRole.Member and not sends(out, GroupMemberRoleChanged)

    out = []
    hub.set_role(A.node_id.hex, B.node_id.hex, GroupMemberRole.Admin, 0.0, out)
    assert refusals(out) == [] and hub.roster[B.node_id.hex].role is GroupMemberRole.Admin
    assert {s.peer for s in sends(out, GroupMemberRoleChanged)} == {A.node_id, B.node_id, C.node_id}
    out = []
    hub.kick(B.node_id.hex, C.node_id.hex, 0.0, out)  # an Admin now
    assert refusals(out) == [] and C.node_id.hex not in hub.roster
    notices = sends(out, GroupMemberLeft)
    assert {s.peer for s in notices} == {A.node_id, B.node_id, C.node_id}  # the kicked one is told too
    assert all(s.payload.reason is LeaveReason.Kicked for s in notices)
    assert C.node_id not in copies(submit(hub, sealed(A, sent_at_s=1.0), 1.0))


def test_the_shadow_is_kept_in_sync_with_the_roster_and_the_chain_follows_the_lowest_node_ids() -> None:
    hub = make_hub()
    assert OUTSIDER.node_id.hex < A.node_id.hex < C.node_id.hex  # the newcomer takes the shadow's post
    out = join(hub, OUTSIDER, 0.0)
    assert (hub.shadow, hub.candidate) == (OUTSIDER.node_id.hex, A.node_id.hex)
    syncs = sends(out, GroupHubShadowSync)
    assert [s.peer for s in syncs] == [A.node_id, OUTSIDER.node_id]  # the roster, then the new chain
    latest = syncs[-1].payload
    assert OUTSIDER.node_id.hex in {m.node_id for m in latest.members}
    assert latest.candidate_id == A.node_id.hex and latest.config_version == hub.config_version
    assert [s.peer for s in sends(out, GroupCandidateAssigned)] == [A.node_id]


# -- settling after a takeover ------------------------------------------------------------------


def test_a_new_hub_holds_messages_until_every_member_reported_then_numbers_above_the_highest() -> None:
    hub = make_hub(seq=5)
    hub.start_settling({A.node_id.hex, B.node_id.hex, C.node_id.hex}, 0.0)
    held = sealed(A, "during settling")
    out = submit(hub, held, 0.1)
    out += request_sync(hub, A, 7, 0.2) + request_sync(hub, B, 9, 0.3)
    assert not sends(out, GroupMessage) and not sends(out, GroupSyncResponse)  # waiting for C
    out = request_sync(hub, C, 8, 0.4)
    responses = sends(out, GroupSyncResponse)
    assert {s.peer for s in responses} == {A.node_id, B.node_id, C.node_id}
    assert all(s.payload.latest_seq == 9 for s in responses)
    assert {s.payload.seq for s in sends(out, GroupMessage)} == {10}  # above every reported number
    assert hub.settling is None and hub.seq == 10


def test_a_new_hub_settles_after_the_timeout_when_a_member_never_reports() -> None:
    hub = make_hub(seq=5)
    hub.start_settling({A.node_id.hex, B.node_id.hex, C.node_id.hex}, 0.0)
    held = sealed(B, "during settling")
    out = submit(hub, held, 0.1) + request_sync(hub, A, 12, 0.2)
    assert not sends(out, GroupMessage)
    assert hub.next_deadline() == SETTINGS.settle_timeout_s
    out = []
    hub.handle_timer(SETTINGS.settle_timeout_s - 0.001, out)
    assert not sends(out, GroupMessage) and hub.settling is not None
    hub.handle_timer(SETTINGS.settle_timeout_s, out)
    assert [s.payload.latest_seq for s in sends(out, GroupSyncResponse)] == [12]
    assert {s.payload.seq for s in sends(out, GroupMessage)} == {13}
    assert {s.payload.seq for s in sends(submit(hub, sealed(C, sent_at_s=1.1), 1.1), GroupMessage)} == {14}


def request_sync(hub: HubGroup, identity: Identity, since: int, now: float) -> list[GroupOutput]:
    out: list[GroupOutput] = []
    hub.sync_requested(identity.node_id.hex, since, now, out)
    return out
