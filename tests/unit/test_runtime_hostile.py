"""Hostile input to the runtime (tomproto/core/runtime.py, backup_exchange.py): every frame is
refused with its reason, counted, published as EnvelopeRefused and released with a FrameRefusal,
never raising and never reaching the application; a flooder is throttled without slowing anyone
else down."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime_net import Net
from tomproto.core import backup_exchange
from tomproto.core.backup import BackupEntry
from tomproto.core.delivery import DeliveryStatus
from tomproto.core.framing import FrameRefusal
from tomproto.core.group_events import GroupMessageRefused
from tomproto.core.paths import Transport
from tomproto.core.runtime import RuntimeOutput, RuntimeSettings
from tomproto.core.runtime_events import (
    BackupStored,
    EnvelopeForwarded,
    EnvelopeRefused,
    Purpose,
    RefusalReason,
    RefusedByPeer,
    ReleaseFrame,
)
from tomproto.core.transport_events import Received
from tomproto.errors import DecodeError
from tomproto.sealing import verify_envelope
from tomproto.wire import encode_payload
from tomproto.wire.codec import encode
from tomproto.wire.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    MessageType,
    decode_envelope,
    encode_envelope,
    pack_signed,
)
from tomproto.wire.group import GroupInvite, GroupLeave
from tomproto.wire.payloads import BackupMessageIdsPayload, BackupPayload, BackupQueryPayload, NodeRole, PeerAnnounce

R = RefusalReason
DAY_MS = 24 * 3600 * 1000


def releases_of(frame: Received, outputs: list[RuntimeOutput]) -> list[ReleaseFrame]:
    return [o for o in outputs if isinstance(o, ReleaseFrame) and o.frame is frame]


def assert_refused(net: Net, to: str, source: str, wire: bytes, reason: RefusalReason) -> EnvelopeRefused:
    """`wire` from `source` is refused by `to` for `reason`: one refusal counted and published, the
    frame released as refused, nothing delivered, nothing ACKed."""
    node = net[to]
    before = (node.runtime.counters.refused.copy(), len(node.inbox), node.runtime.counters.acks_sent)
    frame, outputs = net.inject(to, source, wire)
    (release,) = releases_of(frame, outputs)
    assert release.refusal is not None
    refusals = [o for o in outputs if isinstance(o, EnvelopeRefused)]
    assert [r.reason for r in refusals] == [reason], refusals
    assert refusals[0].peer == net[source].id
    counted = node.runtime.counters.refused - before[0]
    assert counted == {reason.value: 1}
    assert len(node.inbox) == before[1] and node.runtime.counters.acks_sent == before[2]
    assert not [o for o in outputs if isinstance(o, EnvelopeForwarded)]
    return refusals[0]


def backup_wire(
    net: Net, holder: str, to: str, inner: bytes, *, msg_type: MessageType = MessageType.BackupDeliver,
    recipient: str | None = None, expires_at_ms: int | None = None,
) -> bytes:  # fmt: skip
    """A backup message from `holder` to `to` carrying the envelope `inner`, described as the
    envelope says of itself unless told otherwise."""
    try:
        envelope: Envelope | None = decode_envelope(inner)
    except DecodeError:
        envelope = None
    message_id = envelope.id if envelope else "00000000-0000-4000-8000-000000000000"
    sender = envelope.sender if envelope else net[holder].id.hex
    recipient_hex = net[recipient].id.hex if recipient else (envelope.recipient if envelope else net[to].id.hex)
    expires = net.wall_ms() + 3_600_000 if expires_at_ms is None else expires_at_ms
    payload = encode(BackupPayload(message_id, inner, recipient_hex, sender, expires, 100, ()))
    return net.seal(holder, to, msg_type, payload, encrypt=False)


# -- what does not decode or verify -----------------------------------------------------------------


def test_random_bytes_are_refused_as_malformed() -> None:
    net = Net("ab")
    assert_refused(net, "b", "a", random.Random(5).randbytes(300), R.malformed)
    assert_refused(net, "b", "a", b"", R.malformed)


def test_a_truncated_envelope_is_refused_as_malformed() -> None:
    net = Net("ab")
    wire = net.seal("a", "b")
    for cut in (1, 10, len(wire) // 2):
        assert_refused(net, "b", "a", wire[:-cut], R.malformed)


def test_more_than_256_kib_is_refused_before_parsing() -> None:
    net = Net("ab")
    assert_refused(net, "b", "a", bytes(MAX_ENVELOPE_BYTES + 1), R.too_large)
    assert_refused(net, "b", "a", bytes(MAX_ENVELOPE_BYTES), R.malformed)  # at the cap: parsed, and bad


def test_a_forged_signature_is_refused() -> None:
    net = Net("abc")
    envelope = verify_envelope(net.seal("a", "b", MessageType.GroupMessage, b"pay 10", encrypt=False))
    tampered = [
        dataclasses.replace(envelope, payload=b"pay 99"),
        dataclasses.replace(envelope, timestamp_ms=envelope.timestamp_ms + 1),
        dataclasses.replace(envelope, id=envelope.id[:-1] + ("0" if envelope.id[-1] != "0" else "1")),
        dataclasses.replace(envelope, sender=net["c"].id.hex),  # a's signature passed off as c's
        dataclasses.replace(envelope, signature=bytes([envelope.signature[0] ^ 1]) + envelope.signature[1:]),
    ]
    for forged in tampered:
        assert_refused(net, "b", "a", encode_envelope(forged), R.bad_signature)
    assert net["b"].inbox == []


def test_an_unsigned_envelope_is_refused() -> None:
    net = Net("ab")
    envelope = verify_envelope(net.seal("a", "b"))
    assert_refused(net, "b", "a", encode_envelope(dataclasses.replace(envelope, signature=b"")), R.unsigned)


def test_a_lowered_ttl_is_not_a_forgery_it_is_outside_the_signature() -> None:
    net = Net("ab")
    envelope = verify_envelope(net.seal("a", "b", payload=b"x"))
    net.inject("b", "a", encode_envelope(dataclasses.replace(envelope, ttl=0)))
    assert net["b"].plaintexts() == [b"x"]  # addressed to b: ttl limits forwarding only


def test_a_plain_chat_or_one_that_does_not_decrypt_is_refused() -> None:
    net = Net("ab")
    assert_refused(net, "b", "a", net.seal("a", "b", payload=b"clear", encrypt=False), R.not_encrypted)
    envelope = verify_envelope(net.seal("a", "b", payload=b"clear", encrypt=False))
    _, wire = pack_signed(
        dataclasses.replace(envelope, encrypted=True, signature=b""), net["a"].identity.sign
    )  # fmt: skip
    assert_refused(net, "b", "a", wire, R.undecryptable)


def test_an_ack_whose_payload_does_not_parse_is_refused() -> None:
    net = Net("ab")
    assert_refused(net, "b", "a", net.seal("a", "b", MessageType.Ack, b"\xc1junk", encrypt=False), R.bad_payload)


# -- routing abuse --------------------------------------------------------------------------------


def test_a_chat_for_another_node_is_forwarded_and_never_reaches_our_application() -> None:
    net = Net("abc")
    wire = net.seal("a", "c", payload=b"secret for c")
    frame, outputs = net.inject("b", "a", wire)
    assert releases_of(frame, outputs)[0].refusal is None
    assert net["b"].inbox == [] and net.rt("b").inbox_size == 0
    (forward,) = net.sent_by("b", Purpose.forward)
    assert forward.command.next_hop == net["c"].id
    assert verify_envelope(forward.wire).payload == verify_envelope(wire).payload  # still sealed for c
    net.pump()
    assert net["c"].plaintexts() == [b"secret for c"]


def test_an_envelope_sent_back_to_where_it_came_from_is_refused_as_a_loop() -> None:
    net = Net("abc")
    wire = net.seal("a", "c", payload=b"boomerang")
    assert_refused(net, "b", "c", wire, R.route_loops)  # c handed b an envelope for c


def test_five_relays_in_via_are_refused_even_addressed_to_us() -> None:
    net = Net("abcdefg")
    hops = ("c", "d", "e", "f", "g")
    assert_refused(net, "b", "a", net.seal("a", "b", via=hops), R.via_too_long)
    assert_refused(net, "c", "a", net.seal("a", "b", via=hops), R.via_too_long)
    net.inject("b", "a", net.seal("a", "b", payload=b"four", via=hops[:4]))
    assert net["b"].plaintexts() == [b"four"]


def test_ttl_0_at_a_relay_is_refused_and_ttl_1_is_its_last_hop() -> None:
    net = Net("abcd")
    assert_refused(net, "b", "a", net.seal("a", "d", via=("b", "c"), ttl=0), R.ttl_exhausted)
    net.inject("b", "a", net.seal("a", "d", via=("b", "c"), ttl=1))
    (forward,) = net.sent_by("b", Purpose.forward)
    assert verify_envelope(forward.wire).ttl == 0
    net.queue = [s for s in net.queue if s.command.purpose is Purpose.forward]  # not b's ACK to a
    net.pump()
    assert net.rt("c").counters.refused[R.ttl_exhausted] == 1 and net["d"].inbox == []


def test_a_replay_under_a_new_id_is_caught_by_its_nonce() -> None:
    net = Net("ab")
    envelope = verify_envelope(net.seal("a", "b", payload=b"once"))
    net.inject("b", "a", encode_envelope(envelope))
    again = dataclasses.replace(envelope, id="00000000-0000-4000-8000-000000000001", signature=b"")
    _, wire = pack_signed(again, net["a"].identity.sign)
    assert_refused(net, "b", "a", wire, R.replayed_nonce)
    assert net["b"].plaintexts() == [b"once"]


def test_a_peer_announcing_the_relay_role_is_not_routed_through_only_a_configured_relay_is() -> None:
    net = Net("abcr")
    net.rt("a").settings = RuntimeSettings(relays=frozenset({net["r"].id}))
    mine = PeerAnnounce(net["c"].id.hex, "c", (NodeRole.Relay,), None, net.wall_ms())  # self-declared
    net.inject("a", "c", net.seal("c", "a", MessageType.PeerAnnounce, encode(mine), encrypt=False))
    assert net.rt("a").liveness.status(net["c"].id) is not None  # c is online for a
    assert net.rt("a").relay_for(net["b"].id) is None
    net.inject("a", "r", net.seal("r", "a", MessageType.Heartbeat, b"", encrypt=False))
    assert net.rt("a").relay_for(net["b"].id) == net["r"].id


def test_a_stale_replay_does_not_make_its_signer_or_peer_online() -> None:
    net = Net("abm")
    net.now = 1_000.0
    old = net.seal("a", "b", payload=b"old", at_s=1.0)
    assert_refused(net, "b", "m", old, R.stale)
    assert net.rt("b").liveness.status(net["a"].id) is None
    assert net.rt("b").liveness.status(net["m"].id) is None


def test_a_fresh_message_replayed_after_the_dedup_table_overflowed_is_refused_as_stale() -> None:
    net = Net("abm", settings=RuntimeSettings(dedup_capacity=3))
    first = net.seal("a", "b", payload=b"first")
    net.inject("b", "a", first)
    for index in range(3):
        net.advance(net.now + 1.0)
        net.inject("b", "a", net.seal("a", "b", payload=b"later %d" % index))
    assert_refused(net, "b", "m", first, R.stale)  # still fresh (3 s old), but forgotten
    assert net["b"].plaintexts().count(b"first") == 1


# -- the backup exchange --------------------------------------------------------------------------


def test_a_backup_delivery_of_a_forged_envelope_is_refused() -> None:
    net = Net("abh")
    inner = verify_envelope(net.seal("a", "b", payload=b"real"))
    forged = encode_envelope(dataclasses.replace(inner, timestamp_ms=inner.timestamp_ms + 1))
    assert_refused(net, "b", "h", backup_wire(net, "h", "b", forged), R.backup_refused)
    assert_refused(net, "b", "h", backup_wire(net, "h", "b", b"\x9a\x00"), R.backup_refused)


def test_a_backup_delivery_naming_another_recipient_is_refused() -> None:
    net = Net("abch")
    for_c = net.seal("a", "c", payload=b"for c")
    assert_refused(net, "b", "h", backup_wire(net, "h", "b", for_c, recipient="b"), R.backup_refused)  # lies
    assert_refused(net, "b", "h", backup_wire(net, "h", "b", for_c), R.wrong_recipient)  # honest, not ours


def test_a_backup_delivery_that_is_no_message_or_has_expired_is_refused() -> None:
    net = Net("abh")
    ack = net.seal("a", "b", MessageType.Heartbeat, b"", encrypt=False)
    assert_refused(net, "b", "h", backup_wire(net, "h", "b", ack), R.backup_refused)
    old = net.seal("a", "b", payload=b"late")
    assert_refused(net, "b", "h", backup_wire(net, "h", "b", old, expires_at_ms=net.wall_ms() - 1), R.stale)
    assert_refused(net, "b", "h", net.seal("h", "b", MessageType.BackupDeliver, b"\xc1", encrypt=False), R.bad_payload)


def test_a_backup_replicate_by_someone_other_than_the_sender_is_refused() -> None:
    net = Net("abcm")
    inner = net.seal("a", "c", payload=b"for c")  # m got hold of a's envelope and wants b to keep it
    refusal = assert_refused(net, "b", "m", backup_wire(net, "m", "b", inner, msg_type=MessageType.BackupReplicate),
                             R.backup_refused)  # fmt: skip
    assert refusal.sender_hex == net["m"].id.hex
    assert len(net.rt("b").store) == 0 and net["b"].facts(BackupStored) == []
    for_b = net.seal("a", "b", payload=b"for b")  # not even as a delivery to b itself
    assert_refused(net, "b", "m", backup_wire(net, "m", "b", for_b, msg_type=MessageType.BackupReplicate),
                   R.backup_refused)  # fmt: skip
    assert net["b"].inbox == []


def test_a_replica_is_kept_only_from_its_sender_on_a_link_of_our_own() -> None:
    net = Net("abcm")
    inner = net.seal("a", "c", payload=b"for c")  # signed and replicated by a, but forwarded by m
    assert_refused(net, "b", "m", backup_wire(net, "a", "b", inner, msg_type=MessageType.BackupReplicate),
                   R.backup_refused)  # fmt: skip
    assert len(net.rt("b").store) == 0


def test_a_sender_gets_at_most_max_replicas_per_sender_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_exchange, "MAX_REPLICAS_PER_SENDER", 2)
    net = Net("abc")
    for index in range(2):
        inner = net.seal("a", "c", payload=b"for c %d" % index)
        net.inject("b", "a", backup_wire(net, "a", "b", inner, msg_type=MessageType.BackupReplicate))
    inner = net.seal("a", "c", payload=b"one too many")
    refusal = assert_refused(net, "b", "a", backup_wire(net, "a", "b", inner, msg_type=MessageType.BackupReplicate),
                             R.backup_refused)  # fmt: skip
    assert "too many" in refusal.detail and len(net.rt("b").store) == 2


def test_a_full_store_refuses_a_replica_rather_than_evict_one_of_our_own() -> None:
    net = Net("abc")
    store = net.rt("b").store
    store.capacity = 1
    mine = verify_envelope(net.seal("b", "c", payload=b"mine"))
    store.add(BackupEntry(mine.id, net["c"].id, net["b"].id, encode_envelope(mine), 3600.0,
                          net.wall_ms(3600.0), replica=False, next_attempt_s=5.0))  # fmt: skip
    inner = net.seal("a", "c", payload=b"for c")
    refusal = assert_refused(net, "b", "a", backup_wire(net, "a", "b", inner, msg_type=MessageType.BackupReplicate),
                             R.backup_refused)  # fmt: skip
    assert refusal.detail == "store full" and mine.id in store and len(store) == 1


def test_a_backup_query_does_not_resend_what_was_just_attempted() -> None:
    net = Net("abc")
    inner = net.seal("a", "c", payload=b"for c")
    net.inject("b", "a", backup_wire(net, "a", "b", inner, msg_type=MessageType.BackupReplicate))
    query = encode(BackupQueryPayload(net["c"].id.hex))
    for _ in range(3):  # c comes online (an attempt), then asks, and asks again
        net.inject("b", "c", net.seal("c", "b", MessageType.BackupQuery, query, encrypt=False))
    assert len(net.sent_by("b", msg_type=MessageType.BackupDeliver)) == 1
    net.now += 5.0
    net.inject("b", "c", net.seal("c", "b", MessageType.BackupQuery, query, encrypt=False))
    assert len(net.sent_by("b", msg_type=MessageType.BackupDeliver)) == 2


def test_a_backup_confirm_from_a_peer_that_is_not_the_recipient_removes_nothing() -> None:
    net = Net("abcm")
    inner = net.seal("a", "c", payload=b"for c")
    net.inject("b", "a", backup_wire(net, "a", "b", inner, msg_type=MessageType.BackupReplicate))
    message_id = verify_envelope(inner).id
    assert message_id in net.rt("b").store
    for liar in ("m", "a"):
        confirm = net.seal(liar, "b", MessageType.BackupConfirmDelivery, encode(BackupMessageIdsPayload((message_id,))),
                           encrypt=False)  # fmt: skip
        assert_refused(net, "b", liar, confirm, R.backup_refused)
        assert message_id in net.rt("b").store
    confirm = net.seal("c", "b", MessageType.BackupConfirmDelivery, encode(BackupMessageIdsPayload((message_id,))),
                       encrypt=False)  # fmt: skip
    net.inject("b", "c", confirm)
    assert message_id not in net.rt("b").store


def test_a_plain_message_replayed_inside_a_backup_delivery_is_not_delivered_twice() -> None:
    # A plain (signed, not encrypted) message has no nonce to catch its replay: a group envelope,
    # which goes to the group engine (here: a Leave for a group b does not know, refused there).
    net = Net("abm")
    inner = net.seal("a", "b", MessageType.GroupLeave, encode_payload(GroupLeave("grp-x")), encrypt=False)
    net.inject("b", "a", inner)
    assert len(net["b"].facts(GroupMessageRefused)) == 1
    net.advance(700.0)  # b's id:from entry is gone; m, which relayed it once, wraps it as a backup
    net.inject("b", "m", backup_wire(net, "m", "b", inner))
    assert len(net["b"].facts(GroupMessageRefused)) == 1


def test_an_encrypted_chat_replayed_inside_a_backup_delivery_hours_later_is_not_delivered_twice() -> None:
    net = Net("abm")
    inner = net.seal("a", "b", payload=b"chat")
    net.inject("b", "a", inner)
    net.advance(3 * 3600.0)
    net.inject("b", "m", backup_wire(net, "m", "b", inner))
    assert net["b"].plaintexts() == [b"chat"]
    assert net.rt("b").counters.duplicates == 1


def test_a_backup_older_than_the_dedup_memory_is_refused_as_stale_not_delivered_again() -> None:
    """Past its capacity the dedup table forgets the oldest deliveries; a backup of one of them
    can no longer be told from a replay, so it is refused."""
    net = Net("abm", settings=RuntimeSettings(dedup_capacity=3))
    first = net.seal("a", "b", payload=b"first")
    net.inject("b", "a", first)
    for index in range(3):
        net.advance(net.now + 1.0)
        net.inject("b", "a", net.seal("a", "b", payload=b"later %d" % index))
    net.advance(net.now + 700.0)
    assert_refused(net, "b", "m", backup_wire(net, "m", "b", first), R.stale)
    assert net["b"].plaintexts().count(b"first") == 1


def test_a_backup_older_than_a_day_is_refused_as_stale() -> None:
    net = Net("abm")
    inner = net.seal("a", "b", payload=b"old news")
    net.advance(24 * 3600.0 + 1.0)
    assert_refused(net, "b", "m", backup_wire(net, "m", "b", inner), R.stale)
    assert net["b"].plaintexts() == []


# -- anti-spam ------------------------------------------------------------------------------------


def test_a_throttled_envelope_is_refused_counted_and_released_as_throttled_for_the_sender_to_see() -> None:
    net = Net("ab")
    for index in range(20):
        net.inject("b", "a", net.seal("a", "b", payload=b"%d" % index))
    wire = net.seal("a", "b", payload=b"one too many")
    frame, outputs = net.inject("b", "a", wire)
    (release,) = releases_of(frame, outputs)
    assert release.refusal is FrameRefusal.throttled
    assert [(r.reason, r.message_id) for r in net["b"].refusals()] == [(R.throttled, verify_envelope(wire).id)]
    assert net.rt("b").counters.refused[R.throttled] == 1 and len(net["b"].inbox) == 20
    # The sender's driver reads the refusal on its stream and hands it over: a fact, and counted.
    seen = net.rt("a").refused_by_peer(verify_envelope(wire).id, net["b"].id, release.refusal, net.now)
    assert seen == [RefusedByPeer(verify_envelope(wire).id, net["b"].id, FrameRefusal.throttled, net.now)]
    assert net.rt("a").counters.refused_by_peers["throttled"] == 1


def test_a_throttled_message_is_delivered_by_its_resend() -> None:
    net = Net("ab")
    ids = [net.send("a", "b", b"%d" % index) for index in range(25)]
    net.pump()
    assert len(net["b"].inbox) == 20 and net.rt("b").counters.refused[R.throttled] == 5
    net.advance(31.0)
    assert len(net["b"].inbox) == 25
    assert {net.status("a", i) for i in ids} == {DeliveryStatus.delivered}


def test_acks_heartbeats_and_receipts_are_never_throttled() -> None:
    net = Net("ab")
    for _ in range(50):
        net.inject("b", "a", net.seal("a", "b", MessageType.Heartbeat, b"", encrypt=False))
    assert net.rt("b").counters.refused.total() == 0


def test_a_granted_peer_gets_a_300_message_burst_through_and_the_grant_ends_at_its_time() -> None:
    net = Net("ab")
    net.rt("b").grant(net["a"].id, rate_per_s=100.0, burst=300.0, until_s=10.0, now=0.0)
    for index in range(300):
        net.inject("b", "a", net.seal("a", "b", payload=b"%d" % index))
    assert len(net["b"].inbox) == 300 and net.rt("b").counters.refused.total() == 0
    net.now = 10.0
    for index in range(25):
        net.inject("b", "a", net.seal("a", "b", payload=b"late %d" % index))
    assert len(net["b"].inbox) == 320 and net.rt("b").counters.refused[R.throttled] == 5


def test_a_flood_at_ten_times_its_budget_is_throttled_while_another_sender_gets_everything_through() -> None:
    net = Net("abf")
    flooder_delivered = 0
    honest: list[str] = []
    for tick in range(500):  # 5 s: the flooder at 100 envelopes a second, a at 4
        net.now = tick * 0.01
        before = len(net["b"].inbox)
        net.inject("b", "f", net.seal("f", "b", payload=b"spam"))
        flooder_delivered += len(net["b"].inbox) - before
        if tick % 25 == 0:
            honest.append(net.send("a", "b", b"honest %d" % tick))
            net.pump()
    budget = 20 + 10 * 5.0  # the burst, then 10 a second
    assert budget - 2 <= flooder_delivered <= budget
    assert net.rt("b").counters.refused[R.throttled] == 500 - flooder_delivered
    assert [m.message_id for m in net["b"].inbox if m.sender_hex == net["a"].id.hex] == honest
    assert all(net["a"].statuses(i)[-1].name == "delivered" for i in honest)
    throttled = [r for r in net["b"].released if r.refusal is FrameRefusal.throttled]
    assert {r.frame.peer for r in throttled} == {net["f"].id}


# -- anything at all ------------------------------------------------------------------------------

_NET = Net("abc", settings=RuntimeSettings(inbox_messages=4, max_held_frames=8))
_NET["b"].reading = False
_VALID = [
    _NET.seal("a", "b", payload=b"chat"),
    _NET.seal("a", "c", via=("b",), payload=b"relayed"),
    _NET.seal("a", "b", MessageType.Ack, b"\x92\xa1x\xa1y", encrypt=False),
    backup_wire(_NET, "c", "b", _NET.seal("a", "b", payload=b"kept")),
]


def _mutated(data: st.DataObject) -> bytes:
    wire = bytearray(data.draw(st.sampled_from(_VALID)))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(0, len(wire) - 1)))
        if action == "flip" and wire:
            wire[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del wire[position:]
        else:
            wire[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(wire)


def _signed_nonsense(data: st.DataObject) -> bytes:
    """A validly signed envelope of any type whose payload is anything: it reaches every decoder."""
    payload = data.draw(st.binary(max_size=200) | st.sampled_from([_VALID[0], _VALID[3], b"\x91\xc0"]))
    msg_type = data.draw(st.sampled_from(list(MessageType)))
    via = tuple(data.draw(st.lists(st.sampled_from("abc"), max_size=5)))
    return _NET.seal(
        data.draw(st.sampled_from("ac")), data.draw(st.sampled_from("bc")), msg_type, payload,
        encrypt=data.draw(st.booleans()), via=via, ttl=data.draw(st.integers(0, 2)),
        at_s=_NET.now + data.draw(st.sampled_from([0.0, -600.0, 400.0])),
    )  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_bytes_never_raise_and_each_frame_is_released_exactly_once_or_held(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(["random", "mutated", "signed"]))
    if source == "random":
        wire = data.draw(st.binary(max_size=600))
    else:
        wire = _mutated(data) if source == "mutated" else _signed_nonsense(data)
    transport = data.draw(st.sampled_from(list(Transport)))
    _NET.now += 0.5  # the senders' budgets refill
    runtime = _NET.rt("b")
    held_before = runtime.held_frames
    frame = _NET.frame(data.draw(st.sampled_from("ac")), wire, transport)
    outputs = runtime.receive(frame, _NET.now)
    releases = releases_of(frame, outputs)
    assert len(releases) == 1 or (releases == [] and runtime.held_frames == held_before + 1)
    if releases and releases[0].refusal is not None:
        assert [o for o in outputs if isinstance(o, EnvelopeRefused)]
    while runtime.held_frames >= 8 or runtime.inbox_size >= 4:  # the application reads now and then
        runtime.take_message(_NET.now)


def test_a_group_payload_naming_a_node_id_that_is_no_key_is_refused_not_raised() -> None:
    # 64 hex characters pass the codec; only the engine learns it is no Ed25519 key.
    net = Net("ab")
    not_a_key = "f" * 64
    invite = GroupInvite("grp-x", "trap", not_a_key, "mallory")
    net.inject("b", "a", net.seal("a", "b", MessageType.GroupInvite, encode_payload(invite), encrypt=False))
    refused = net["b"].facts(GroupMessageRefused)
    assert [fact.reason.value for fact in refused] == ["malformed"]
    assert net.rt("b").counters.refused["bad_payload"] == 1
