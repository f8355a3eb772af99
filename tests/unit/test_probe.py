"""Probe and reply contents: what the responder tells, and the follow-up of its whole hold time."""

from __future__ import annotations

import msgpack

from tomstress.engine import ProbeRecord
from tomstress.probe import REPLY_TAG, FollowUp, Probe, encode_probe, encode_reply, parse_probe, parse_reply
from tomstress.summary import stack_summary

PROBE = Probe("run-a", "ping", 7, 123_456_789, 1_764_000_000_000_000_000, 200)


def test_a_probe_and_its_reply_keep_their_size_and_fields() -> None:
    plaintext = encode_probe(PROBE)
    assert len(plaintext) == 200
    assert parse_probe(plaintext) == PROBE
    reply = encode_reply(PROBE, 1_000, 2_000, len(plaintext), FollowUp(6, 750_000))
    assert len(reply) == 200  # both directions carry the same bytes
    parsed = parse_reply(reply)
    assert parsed is not None
    assert (parsed.seq, parsed.responder_received_wall_ns, parsed.responder_sent_wall_ns) == (7, 1_000, 2_000)
    assert parsed.follow_up == FollowUp(6, 750_000)


def test_a_reply_without_follow_up_and_one_with_fields_from_a_later_version_both_parse() -> None:
    first = parse_reply(encode_reply(PROBE, 1_000, 2_000, 200))
    assert first is not None and first.follow_up is None
    fields = ["run-a", "ping", 7, 1, 2, 3, 4, 6, 750_000, 99, 98, b""]  # two more integers, then padding
    later = parse_reply(REPLY_TAG + msgpack.packb(fields, use_bin_type=True))
    assert later is not None and later.follow_up == FollowUp(6, 750_000)


def test_malformed_replies_are_not_replies() -> None:
    assert parse_reply(b"TSR1" + msgpack.packb(["run-a", "ping", 7, -1, 2, 3, 4, b""])) is None  # negative time
    assert parse_reply(b"TSR1" + msgpack.packb(["run-a", "ping", 7, 1, 2, 3, b""])) is None  # a field short
    assert parse_reply(b"TSR1\xc1") is None
    assert parse_reply(encode_probe(PROBE)) is None


def test_the_network_part_is_the_rtt_less_both_stacks_and_only_when_every_part_is_known() -> None:
    complete = ProbeRecord(0, 0.0, sent_s=0.0, replied_s=0.050, path_received="direct",
                           send_stack_s=0.001, receive_stack_s=0.002, responder_hold_s=0.003)  # fmt: skip
    no_follow_up = ProbeRecord(1, 0.1, sent_s=0.1, replied_s=0.160, path_received="direct",
                               send_stack_s=0.001, receive_stack_s=0.002)  # fmt: skip
    assert abs(complete.network_rtt_s - 0.044) < 1e-12  # type: ignore[operator]
    assert no_follow_up.network_rtt_s is None
    stack = stack_summary([complete, no_follow_up])
    assert stack["send_p50_ms"] == 1.0 and stack["responder_p50_ms"] == 3.0
    assert stack["network_rtt_ms"]["n"] == 1 and abs(stack["network_rtt_ms"]["p50"] - 44.0) < 1e-9
    assert list(stack["network_rtt_ms_by_path"]) == ["direct"]
