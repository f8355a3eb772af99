"""One group seen by one member (tomproto/core/group_member.py), driven directly: delivery in hub
order and once, the gap wait then SyncRequest then skip, the wait for a sender key, the
HubUnreachable report when the hub does not acknowledge, and following a hub migration."""

from __future__ import annotations

import dataclasses
import random

from tomproto.core.group_events import (
    GroupGapSkipped,
    GroupMessageConfirmed,
    GroupMessageReceived,
    GroupMessageRefused,
    GroupMessageResent,
    GroupMessageUnreadable,
    GroupOutput,
    GroupRefusal,
    HubMigrated,
    HubUnreachableReported,
    SenderKeyRotated,
    SendGroupPayload,
)
from tomproto.core.group_member import MemberGroup
from tomproto.core.group_settings import GroupSettings, elect_chain
from tomproto.crypto.e2e import encrypt_for
from tomproto.crypto.group_keys import seal_group_message
from tomproto.identity import Identity
from tomproto.wire.group import (
    EncryptedSenderKey,
    GroupHubUnreachable,
    GroupInfo,
    GroupMember,
    GroupMemberRole,
    GroupMessage,
    GroupSenderKeyDistribution,
    GroupSyncRequest,
)

SETTINGS = GroupSettings()
GROUP_ID = "grp-00000000-0000-4000-8000-000000000001"
HUB = Identity.from_seed(bytes([1]) * 32)
A = Identity.from_seed(bytes([2]) * 32)  # the lowest NodeId of the members: the shadow
ME = Identity.from_seed(bytes([3]) * 32)  # the member under test
C = Identity.from_seed(bytes([4]) * 32)  # the candidate
NEW_HUB = Identity.from_seed(bytes([5]) * 32)
KEYS = {A.node_id.hex: bytes([0xA]) * 32, C.node_id.hex: bytes([0xC]) * 32}


def wall_ms(now: float) -> int:
    return int((1.7e9 + now) * 1000)


def group_info() -> GroupInfo:
    members = tuple(
        GroupMember(identity.node_id.hex, name, wall_ms(0.0), GroupMemberRole.Member)
        for identity, name in ((A, "alice"), (ME, "me"), (C, "carol"))
    )
    shadow, candidate = elect_chain([m.node_id for m in members], HUB.node_id.hex)
    return GroupInfo(GROUP_ID, "test", HUB.node_id.hex, shadow, members, A.node_id.hex, wall_ms(0.0),
                     wall_ms(0.0), 50, shadow, candidate, False)  # fmt: skip


def make_member(*, know_keys: bool = True) -> MemberGroup:
    member = MemberGroup(ME, group_info(), SETTINGS, 0.0, random_bytes=random.Random(3).randbytes, wall_ms=wall_ms)
    out: list[GroupOutput] = []
    assert member.synced(member.info, (), 0.0, out)  # joined: numbering starts at 1
    if know_keys:
        for node, key in KEYS.items():
            member.keys.learn(node, 1, key, 0.0, SETTINGS.previous_epoch_grace_s)
    return member


def chain(member: MemberGroup) -> tuple[str | None, str | None]:
    return member.info.shadow_id, member.info.candidate_id


_ids = iter(range(1, 1_000_000))


def message(sender: Identity, seq: int, text: str, *, at_s: float = 0.0, key: bytes | None = None) -> GroupMessage:
    """`sender`'s message as its hub sequenced it."""
    sealed = seal_group_message(
        sender, group_id=GROUP_ID, message_id=f"00000000-0000-4000-8000-{next(_ids):012d}", username=text[:3],
        text=text, sent_at_ms=wall_ms(at_s), sender_key=key or KEYS[sender.node_id.hex], key_epoch=1,
        random_bytes=random.Random(seq).randbytes,
    )  # fmt: skip
    return dataclasses.replace(sealed, seq=seq)


def received(out: list[GroupOutput]) -> list[str]:
    return [event.text for event in out if isinstance(event, GroupMessageReceived)]


def sends(out: list[GroupOutput], kind: type) -> list[SendGroupPayload]:
    return [o for o in out if isinstance(o, SendGroupPayload) and isinstance(o.payload, kind)]


def from_hub(member: MemberGroup, messages: list[GroupMessage], now: float, hub: Identity = HUB) -> list[GroupOutput]:
    out: list[GroupOutput] = []
    for each in messages:
        member.message_from_hub(each, hub.node_id.hex, now, out)
    return out


# -- ordering -----------------------------------------------------------------------------------


def test_messages_are_delivered_in_hub_order() -> None:
    member = make_member()
    out = from_hub(member, [message(A, 1, "one"), message(C, 2, "two"), message(A, 3, "three")], 0.1)
    assert received(out) == ["one", "two", "three"]
    delivered = [e for e in out if isinstance(e, GroupMessageReceived)]
    assert [(e.seq, e.sender, e.hub) for e in delivered] == [
        (1, A.node_id, HUB.node_id), (2, C.node_id, HUB.node_id), (3, A.node_id, HUB.node_id),
    ]  # fmt: skip
    assert member.next_seq == 4


def test_a_gap_filled_within_the_wait_delivers_in_order_without_a_sync() -> None:
    member = make_member()
    one, two, three = message(A, 1, "one"), message(C, 2, "two"), message(A, 3, "three")
    out = from_hub(member, [one, three], 0.0)
    assert received(out) == ["one"]
    out = from_hub(member, [two], 1.0)
    assert received(out) == ["two", "three"]
    out = []
    member.handle_timer(10.0, out, chain(member))
    assert not sends(out, GroupSyncRequest)


def test_a_message_ahead_of_a_gap_waits_then_syncs_then_the_gap_is_skipped() -> None:
    member = make_member()
    out = from_hub(member, [message(A, 1, "one")], 0.0)
    three, four = message(C, 3, "three"), message(A, 4, "four")
    out += from_hub(member, [three], 1.0)
    out += from_hub(member, [four], 1.5)
    assert received(out) == ["one"]  # 3 and 4 wait for 2
    assert member.next_deadline() == 1.0 + SETTINGS.gap_wait_s

    out = []
    member.handle_timer(1.0 + SETTINGS.gap_wait_s - 0.001, out, chain(member))
    assert not sends(out, GroupSyncRequest) and not received(out)
    member.handle_timer(1.0 + SETTINGS.gap_wait_s, out, chain(member))
    requests = sends(out, GroupSyncRequest)
    assert len(requests) == 1
    assert requests[0].peer == HUB.node_id and requests[0].reliable
    assert requests[0].payload == GroupSyncRequest(GROUP_ID, 1)  # since the last seq delivered
    assert not received(out)

    # The hub's history no longer has seq 2: the member skips it, then delivers what waited.
    out = []
    member.synced_since((three, four), 4, HUB.node_id.hex, 3.1, out)
    skipped = [e for e in out if isinstance(e, GroupGapSkipped)]
    assert [(e.first_seq, e.last_seq) for e in skipped] == [(2, 2)]
    assert received(out) == ["three", "four"]
    assert out.index(skipped[0]) < next(i for i, e in enumerate(out) if isinstance(e, GroupMessageReceived))
    assert member.skipped == 1 and member.next_seq == 5


def test_a_sync_that_is_never_answered_skips_the_gap_after_another_wait() -> None:
    member = make_member()
    from_hub(member, [message(A, 1, "one"), message(A, 3, "three")], 0.0)
    out: list[GroupOutput] = []
    member.handle_timer(SETTINGS.gap_wait_s, out, chain(member))
    assert len(sends(out, GroupSyncRequest)) == 1
    out = []
    member.handle_timer(2 * SETTINGS.gap_wait_s - 0.001, out, chain(member))
    assert not received(out)
    member.handle_timer(2 * SETTINGS.gap_wait_s, out, chain(member))
    assert [(e.first_seq, e.last_seq) for e in out if isinstance(e, GroupGapSkipped)] == [(2, 2)]
    assert received(out) == ["three"]
    assert not sends(out, GroupSyncRequest)  # one request per gap


def test_a_duplicate_is_never_delivered_twice() -> None:
    member = make_member()
    one, three = message(A, 1, "one"), message(C, 3, "three")
    out = from_hub(member, [one, one, three, three], 0.0)  # a copy while delivered, a copy while waiting
    out += from_hub(member, [message(A, 2, "two")], 0.5)
    assert received(out) == ["one", "two", "three"]
    # The same message again, from the hub or renumbered by a later one: still not news.
    out = from_hub(member, [one, dataclasses.replace(one, seq=9)], 1.0)
    assert received(out) == []


def test_the_echo_of_our_own_message_holds_its_place_and_is_not_published() -> None:
    member = make_member()
    out: list[GroupOutput] = []
    mine = member.send("mine", 0.0, out)
    submitted = sends(out, GroupMessage)[0].payload
    assert submitted.message_id == mine
    out = from_hub(member, [message(A, 1, "one"), dataclasses.replace(submitted, seq=2), message(C, 3, "three")], 0.1)
    assert received(out) == ["one", "three"]
    assert member.next_seq == 4
    out = []
    member.handle_timer(10.0, out, chain(member))
    assert not sends(out, GroupSyncRequest)  # our own number was no gap


def test_messages_not_from_our_hub_from_non_members_or_tampered_are_refused() -> None:
    member = make_member()
    stranger = Identity.from_seed(bytes([9]) * 32)
    one = message(A, 1, "one")
    out = from_hub(member, [one], 0.0, hub=NEW_HUB)
    out += from_hub(member, [message(stranger, 1, "spam", key=bytes(32))], 0.0)
    tampered = dataclasses.replace(one, ciphertext=bytes([one.ciphertext[0] ^ 1]) + one.ciphertext[1:])
    out += from_hub(member, [tampered], 0.0)
    reasons = [e.reason for e in out if isinstance(e, GroupMessageRefused)]
    assert reasons == [GroupRefusal.not_from_hub, GroupRefusal.not_member, GroupRefusal.bad_signature]
    assert received(out) == []
    assert received(from_hub(member, [one], 0.1)) == ["one"]  # the genuine one still goes through


# -- sender keys --------------------------------------------------------------------------------


def key_distribution(sender: Identity, epoch: int = 1) -> GroupSenderKeyDistribution:
    sealed = encrypt_for(ME.node_id.raw, KEYS[sender.node_id.hex], random_bytes=random.Random(11).randbytes)
    return GroupSenderKeyDistribution(GROUP_ID, sender.node_id.hex, epoch,
                                      (EncryptedSenderKey(ME.node_id.hex, sealed),))  # fmt: skip


def test_a_message_waits_for_its_sender_key_and_opens_when_the_key_arrives() -> None:
    member = make_member(know_keys=False)
    member.keys.learn(A.node_id.hex, 1, KEYS[A.node_id.hex], 0.0, SETTINGS.previous_epoch_grace_s)
    out = from_hub(member, [message(C, 1, "from carol"), message(A, 2, "from alice")], 0.0)
    assert received(out) == []  # alice's waits behind carol's: order holds
    assert member.next_deadline() == SETTINGS.key_wait_s
    out = []
    member.handle_timer(SETTINGS.key_wait_s - 1.0, out, chain(member))
    assert received(out) == [] and not [e for e in out if isinstance(e, GroupMessageUnreadable)]
    member.key_distributed(key_distribution(C), SETTINGS.key_wait_s - 0.5, out)
    assert received(out) == ["from carol", "from alice"]
    assert not [e for e in out if isinstance(e, GroupMessageUnreadable)]


def test_a_message_whose_key_never_arrives_is_reported_unreadable_after_the_wait() -> None:
    member = make_member(know_keys=False)
    member.keys.learn(A.node_id.hex, 1, KEYS[A.node_id.hex], 0.0, SETTINGS.previous_epoch_grace_s)
    carols = message(C, 1, "from carol")
    from_hub(member, [carols, message(A, 2, "from alice")], 1.0)
    out: list[GroupOutput] = []
    member.handle_timer(1.0 + SETTINGS.key_wait_s - 0.001, out, chain(member))
    assert not [e for e in out if isinstance(e, GroupMessageUnreadable)] and received(out) == []
    member.handle_timer(1.0 + SETTINGS.key_wait_s, out, chain(member))
    unreadable = [e for e in out if isinstance(e, GroupMessageUnreadable)]
    assert [(e.message_id, e.sender, e.epoch) for e in unreadable] == [(carols.message_id, C.node_id, 1)]
    assert received(out) == ["from alice"]  # what waited behind it goes on
    out = []
    member.key_distributed(key_distribution(C), 20.0, out)  # too late: it is not delivered now
    assert received(out) == []


def test_our_send_after_10_000_messages_rotates_our_key_first() -> None:
    member = make_member()
    member.keys.own.messages = SETTINGS.rotate_after_messages
    out: list[GroupOutput] = []
    member.send("after many", 5.0, out)
    assert [(e.epoch, e.reason) for e in out if isinstance(e, SenderKeyRotated)] == [(2, "due")]
    distributions = sends(out, GroupSenderKeyDistribution)
    assert [d.payload.epoch for d in distributions] == [2]
    assert {k.recipient_id for k in distributions[0].payload.encrypted_keys} == {A.node_id.hex, C.node_id.hex}
    assert sends(out, GroupMessage)[0].payload.key_epoch == 2


# -- the hub's acknowledgement ------------------------------------------------------------------


def reports(out: list[GroupOutput]) -> list[HubUnreachableReported]:
    return [e for e in out if isinstance(e, HubUnreachableReported)]


def test_an_unacknowledged_message_reports_the_hub_once_per_timeout_to_shadow_and_candidate() -> None:
    member = make_member()
    timeout = SETTINGS.member_ack_timeout_s
    out: list[GroupOutput] = []
    for at_s in (0.0, 1.0, 2.0):
        member.send(f"m{at_s}", at_s, out)
    assert member.next_deadline() == timeout
    out = []
    member.handle_timer(timeout - 0.001, out, chain(member))
    assert reports(out) == []

    # Drive time by the member's own deadlines, as the runtime does, for three timeouts.
    by_time: dict[float, list[GroupOutput]] = {}
    now = 0.0
    while now < 3 * timeout:
        deadline = member.next_deadline()
        assert deadline is not None and deadline > now
        now = deadline
        step: list[GroupOutput] = []
        assert member.handle_timer(now, step, chain(member)) == bool(reports(step))
        by_time[now] = step
    reported_at = [t for t, step in by_time.items() if reports(step)]
    assert reported_at == [timeout, 2 * timeout, 3 * timeout]  # once per timeout, not once per message
    for t in reported_at:
        step = by_time[t]
        targets = [s.peer for s in sends(step, GroupHubUnreachable)]
        assert targets == [A.node_id, C.node_id]  # the shadow and the candidate, once each
        assert all(not s.reliable for s in sends(step, GroupHubUnreachable))
        assert reports(step)[0].reported_to == (A.node_id, C.node_id)
        assert reports(step)[0].hub == HUB.node_id


def test_a_delivery_ack_from_the_hub_confirms_and_ends_the_reports() -> None:
    member = make_member()
    out: list[GroupOutput] = []
    message_id = member.send("hello", 0.0, out)
    out = []
    member.delivery_acknowledged(message_id, NEW_HUB.node_id.hex, 1.0, out)  # not our hub: ignored
    assert out == [] and message_id in member.pending
    member.delivery_acknowledged(message_id, HUB.node_id.hex, 1.0, out)
    assert [(e.message_id, e.hub) for e in out if isinstance(e, GroupMessageConfirmed)] == [
        (message_id, HUB.node_id)
    ]
    out = []
    member.handle_timer(SETTINGS.member_ack_timeout_s + 1.0, out, chain(member))
    assert reports(out) == []


# -- migration ----------------------------------------------------------------------------------


def test_migration_acceptance_rule() -> None:
    member = make_member()
    hub, old = HUB.node_id.hex, "ff" * 32
    lower, higher = sorted((A.node_id.hex, C.node_id.hex))
    assert not member.accepts_migration(hub, old)  # to the hub we already follow
    assert not member.accepts_migration(higher, old)  # away from a hub that is not ours
    assert member.accepts_migration(higher, hub)  # away from our hub
    member.migrate(higher, 1.0, [])
    # A competing claim to replace the same hub: the lower NodeId wins, a higher one loses.
    assert member.accepts_migration(lower, hub)
    assert not member.accepts_migration("ff" * 32, hub)
    member.migrate(lower, 1.1, [])
    assert member.hub == lower and member.previous_hub == higher
    assert not member.accepts_migration(higher, hub)  # no flip-flop back to the higher claim


def test_after_migrating_the_sync_request_precedes_the_resends_with_the_same_ids() -> None:
    member = make_member()
    from_hub(member, [message(A, 1, "one"), message(C, 2, "two")], 0.0)
    out: list[GroupOutput] = []
    pending_ids = [member.send("first", 0.5, out), member.send("second", 0.6, out)]
    out = []
    member.migrate(NEW_HUB.node_id.hex, 4.0, out)
    assert [e for e in out if isinstance(e, HubMigrated)] == [
        HubMigrated(GROUP_ID, HUB.node_id, NEW_HUB.node_id, 4.0)
    ]
    to_new_hub = [o for o in out if isinstance(o, SendGroupPayload)]
    assert all(o.peer == NEW_HUB.node_id and o.reliable for o in to_new_hub)
    assert to_new_hub[0].payload == GroupSyncRequest(GROUP_ID, 2)
    kinds = [type(o.payload).__name__ for o in to_new_hub]
    # Our sender key again (it may have died unforwarded with the old hub), before the resends.
    assert kinds == ["GroupSyncRequest", "GroupSenderKeyDistribution", "GroupMessage", "GroupMessage"]
    assert [o.payload.message_id for o in to_new_hub[2:]] == pending_ids
    assert [e.message_id for e in out if isinstance(e, GroupMessageResent)] == pending_ids
    # The old hub's stragglers are still taken; the new hub's ack confirms.
    assert received(from_hub(member, [message(A, 3, "straggler")], 4.1)) == ["straggler"]
    out = []
    member.delivery_acknowledged(pending_ids[0], NEW_HUB.node_id.hex, 4.2, out)
    assert [e.message_id for e in out if isinstance(e, GroupMessageConfirmed)] == pending_ids[:1]


def test_a_copy_renumbered_by_a_new_hub_is_not_delivered_again_and_leaves_no_gap() -> None:
    # The old hub sequenced alice's message as 2 and died before acknowledging it; alice sent it
    # again to the new hub (same id), which numbered it 3. We had it: it is not news, and its
    # number is no gap either: what follows is delivered at once, nothing is counted as skipped.
    member = make_member()
    two = message(A, 2, "two")
    assert received(from_hub(member, [message(C, 1, "one"), two], 0.0)) == ["one", "two"]
    member.migrate(NEW_HUB.node_id.hex, 5.0, [])
    out = from_hub(member, [dataclasses.replace(two, seq=3), message(C, 4, "four")], 5.5, hub=NEW_HUB)
    assert received(out) == ["four"]
    out += from_hub(member, [dataclasses.replace(two, seq=3)], 5.6, hub=NEW_HUB)  # and again: still nothing
    member.handle_timer(5.5 + 2 * SETTINGS.gap_wait_s, out, chain(member))
    assert received(out) == ["four"]
    assert not sends(out, GroupSyncRequest) and not [e for e in out if isinstance(e, GroupGapSkipped)]
    assert member.skipped == 0 and member.next_seq == 5
