"""The campaign's group records and failover figures (tomstress/groups.py): records survive JSON,
the figures come from the right facts (after the crash, about the dead hub, on the chosen clock),
and messages are counted by id."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.unit.test_node_groups import MEMBERS, knows_everyone, nodes, until
from tomproto.core.group_events import GroupMessageRefused, GroupRefusal, HubPromoted, HubUnreachableReported
from tomproto.identity import Identity
from tomstress.groups import (
    SENT,
    FactRecord,
    GroupFactRecorder,
    fact_fields,
    failover_figures,
    message_counts,
    record_from_json,
    record_to_json,
)

A, B, C, D = (Identity.from_seed(bytes([n]) * 32).node_id.hex for n in (1, 2, 3, 4))  # A: the hub that dies
NEW_HUB = "e" * 64  # a hub of an earlier failover, in records only
CRASH_S = 100.0
WALL_S = 1.7e9


def rec(kind: str, at_s: float, *, mono_offset_s: float = 0.0, **fields: Any) -> FactRecord:
    """A record of a fact at `at_s` (true time; the wall clock is 1.7e9 s ahead of it), on a node
    whose monotonic clock reads `mono_offset_s` ahead of true time, seen 1 ms later."""
    for name in ("last_pong_s",):
        if fields.get(name) is not None:
            fields[name] += mono_offset_s
    seen_s = at_s + 0.001
    return FactRecord(kind, {"group_id": "grp-1", **fields, "at_s": at_s + mono_offset_s},
                      round((seen_s + mono_offset_s) * 1e9), round((seen_s + WALL_S) * 1e9))  # fmt: skip


def failover(mono_offsets: dict[str, float] | None = None) -> dict[str, list[FactRecord]]:
    """A's crash at 100 s, seen by B, C (the shadow) and D; every member chattering."""
    offset = mono_offsets or {}

    def at(node: str, kind: str, at_s: float, **fields: Any) -> FactRecord:
        return rec(kind, at_s, mono_offset_s=offset.get(node, 0.0), **fields)

    return {
        B: [
            at(B, "HubSuspected", 60.0, hub=A, missed_pongs=1, reports=0),  # an earlier hiccup: not this failover
            at(B, "HubUnreachableReported", 103.1, hub=A, reported_to=[C, D]),
            at(B, "HubMigrated", 103.62, old_hub=A, new_hub=C),
            at(B, "FirstMessageThroughNewHub", 103.7, hub=C, message_id="m1", seq=40),
        ],
        C: [
            at(C, "HubMigrated", 50.0, old_hub=NEW_HUB, new_hub=A),  # an earlier failover
            at(C, "HubSuspected", 103.12, hub=A, missed_pongs=0, reports=1),
            at(C, "HubPromoted", 103.6, old_hub=A, reason="missed_pong_and_report", last_pong_s=99.9, reports=2),
            at(C, "HubMigrated", 103.6, old_hub=A, new_hub=C),
            at(C, "ChainRestored", 103.6, hub=C, shadow=D, candidate=B),
            at(C, "FirstMessageThroughNewHub", 103.65, hub=C, message_id="m0", seq=39),
        ],
        D: [
            at(D, "HubUnreachableReported", 103.05, hub=A, reported_to=[C, B]),
            at(D, "HubMigrated", 103.61, old_hub=A, new_hub=C),
            at(D, "FirstMessageThroughNewHub", 103.66, hub=C, message_id="m0", seq=39),
        ],
    }


def test_a_fact_and_its_record_survive_json_with_node_ids_as_hex_and_enums_as_values() -> None:
    hub, shadow = (Identity.from_seed(bytes([n]) * 32).node_id for n in (7, 9))
    fact = HubUnreachableReported("grp-1", hub, (shadow,), 5.0)
    fields = fact_fields(fact)
    assert fields["hub"] == fact.hub.hex and fields["reported_to"] == [fact.reported_to[0].hex]
    record = FactRecord("HubUnreachableReported", fields, 5_000_100, 1_700_000_005_000_100)
    assert record_from_json(json.loads(json.dumps(record_to_json(record)))) == record
    refused = GroupMessageRefused("grp-1", fact.hub, GroupRefusal.rate_limited, "", 1.0)
    assert fact_fields(refused)["reason"] == "rate_limited"


@pytest.mark.parametrize(
    "broken",
    [{}, {"fact": "X", "fields": {}, "mono_ns": 1}, {"fact": 1, "fields": {}, "mono_ns": 1, "wall_ns": 2},
     {"fact": "X", "fields": [], "mono_ns": 1, "wall_ns": 2},
     {"fact": "X", "fields": {}, "mono_ns": 1.5, "wall_ns": 2}],
)  # fmt: skip
def test_a_broken_record_is_refused_with_a_reason(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="group fact record"):
        record_from_json(broken)


def test_a_record_without_at_s_is_timed_when_it_was_seen_and_moves_to_the_wall_clock_with_its_offset() -> None:
    record = FactRecord("X", {}, 2_500_000_000, 1_700_000_002_500_000_000)
    assert record.time_s() == 2.5
    assert record.time_s("wall") == pytest.approx(1_700_000_002.5)
    assert rec("X", 10.0, mono_offset_s=100.0).time_s("wall") == pytest.approx(WALL_S + 10.0)


def test_the_figures_of_a_failover_come_from_the_facts_after_the_crash_about_the_dead_hub() -> None:
    figures = failover_figures(failover(), crash_s=CRASH_S)
    assert (figures.group_id, figures.old_hub, figures.new_hub, figures.promotions) == ("grp-1", A, C, 1)
    assert (figures.reason, figures.reports) == ("missed_pong_and_report", 2)
    assert (figures.detected_by, figures.detection_kind) == (D, "HubUnreachableReported")
    assert figures.detection_after_crash_s == pytest.approx(3.05)
    assert figures.promotion_after_last_pong_s == pytest.approx(3.7)
    assert figures.promotion_after_crash_s == pytest.approx(3.6)
    assert figures.migrated_to == {B: C, C: C, D: C}
    assert figures.migration_after_crash_s == pytest.approx({B: 3.62, C: 3.6, D: 3.61})
    assert figures.migration_after_promotion_s == pytest.approx({B: 0.02, C: 0.0, D: 0.01})
    assert figures.chain_restored_after_crash_s == pytest.approx(3.6)
    assert figures.chain_restored_after_promotion_s == pytest.approx(0.0)
    assert figures.first_message_after_crash_s == pytest.approx({B: 3.7, C: 3.65, D: 3.66})
    assert figures.first_message_after_promotion_s == pytest.approx({B: 0.1, C: 0.05, D: 0.06})
    assert json.loads(json.dumps(figures.as_dict()))["migrated_to"] == {B: C, C: C, D: C}


def test_without_a_crash_time_the_delays_from_the_crash_are_unknown_and_the_rest_is_measured() -> None:
    figures = failover_figures(failover())
    assert figures.old_hub == A and figures.new_hub == C
    assert figures.detection_after_crash_s is None and figures.promotion_after_crash_s is None
    assert figures.migration_after_crash_s == {} and figures.first_message_after_crash_s == {}
    assert figures.promotion_after_last_pong_s == pytest.approx(3.7)
    assert figures.detection_kind == "HubSuspected"  # the hiccup at 60 s is the first sign now
    assert figures.migration_after_promotion_s == pytest.approx({B: 0.02, C: 0.0, D: 0.01})


def test_on_the_wall_clock_each_node_s_facts_move_by_its_own_offset() -> None:
    # Three machines whose monotonic clocks started at different times; their wall clocks agree.
    records = failover({B: 500.0, C: -20.0, D: 7.0})
    figures = failover_figures(records, crash_s=WALL_S + CRASH_S, clock="wall")
    assert figures.promotion_after_crash_s == pytest.approx(3.6)
    assert figures.promotion_after_last_pong_s == pytest.approx(3.7)
    assert figures.migration_after_crash_s == pytest.approx({B: 3.62, C: 3.6, D: 3.61})
    assert figures.first_message_after_crash_s == pytest.approx({B: 3.7, C: 3.65, D: 3.66})
    assert figures.detected_by == D
    assert figures.detection_after_crash_s == pytest.approx(3.05)


def test_two_promotions_are_counted_and_the_first_is_the_new_hub() -> None:
    records = failover()
    records[D].append(rec("HubPromoted", 110.0, old_hub=A, reason="candidate_timeout", last_pong_s=None, reports=0))
    figures = failover_figures(records, crash_s=CRASH_S)
    assert (figures.promotions, figures.new_hub) == (2, C)


def test_with_no_promotion_nothing_is_made_up() -> None:
    records = {B: [rec("HubUnreachableReported", 103.0, hub=A, reported_to=[C])]}
    figures = failover_figures(records, crash_s=CRASH_S, old_hub=A)
    assert (figures.new_hub, figures.promotions, figures.promotion_after_crash_s) == (None, 0, None)
    assert figures.promotion_after_last_pong_s is None and figures.migrated_to == {}
    assert figures.detection_after_crash_s == pytest.approx(3.0)


def test_another_group_s_facts_are_left_out() -> None:
    records = failover()
    records[B].insert(0, rec("HubUnreachableReported", 100.5, hub=A, reported_to=[C], group_id="grp-2"))
    figures = failover_figures(records, crash_s=CRASH_S, group_id="grp-1")
    assert figures.detected_by == D


def test_messages_are_counted_by_id_per_member() -> None:
    def got(at_s: float, message_id: str) -> FactRecord:
        return rec("GroupMessageReceived", at_s, message_id=message_id)

    records = {
        B: [rec(SENT, 1.0, message_id="b1"), rec(SENT, 2.0, message_id="b2"), got(2.1, "c1"), got(2.2, "a1")],
        C: [rec(SENT, 1.5, message_id="c1"), got(1.1, "b1"), got(2.1, "b2")],
        D: [got(1.1, "b1"), got(1.2, "b1"), got(1.6, "c1")],
    }
    counts = message_counts(records)
    # b1 to C and D (twice at D), b2 to C only (D lost it), c1 to B and D; a1 is nobody's send here.
    assert (counts.sent, counts.expected, counts.delivered, counts.duplicated, counts.lost) == (3, 6, 5, 1, 1)
    assert counts.lost_ids == ("b2",) and counts.duplicated_ids == ("b1",)
    only_b = message_counts(records, senders=[B], members=[C, D])
    assert (only_b.sent, only_b.expected, only_b.delivered, only_b.lost) == (2, 4, 3, 1)
    assert message_counts(records, group_id="grp-other").expected == 0


def test_the_recorder_records_a_node_s_group_facts_and_sends_with_both_clocks_until_closed() -> None:
    async def scenario() -> None:
        _, (hub, member) = nodes(2, MEMBERS)
        streamed: list[FactRecord] = []
        recorder = GroupFactRecorder(member, streamed.append)
        group_id = hub.create_group("recorded", [member.node_id], username="hub")
        assert group_id is not None
        await member.wait_group_joined(group_id, timeout_s=5.0)
        await until(lambda: all(knows_everyone(node, group_id, (hub, member)) for node in (hub, member)))
        message_id = recorder.send(group_id, "hello")
        hub.send_group(group_id, "hi")
        counts = recorder.counts
        await until(lambda: counts["GroupMessageReceived"] == 1 and counts["GroupMessageConfirmed"] == 1)
        assert streamed == recorder.records
        kinds = [record.kind for record in recorder.records]
        assert kinds[:2] == ["GroupInvited", "GroupJoined"] and SENT in kinds
        sent = next(record for record in recorder.records if record.kind == SENT)
        assert sent.fields["message_id"] == message_id and sent.group_id == group_id
        for record in recorder.records:
            assert abs(record.time_s() - record.mono_ns / 1e9) < 1.0
            assert record_from_json(json.loads(json.dumps(record_to_json(record)))) == record
        recorder.close()
        hub.send_group(group_id, "unheard")
        await asyncio.sleep(0.1)
        assert recorder.counts["GroupMessageReceived"] == 1
        await hub.close()
        await member.close()

    asyncio.run(asyncio.wait_for(scenario(), 20.0))


def test_hub_promoted_fields_carry_the_last_pong() -> None:
    fact = HubPromoted("grp-1", Identity.from_seed(bytes(32)).node_id, "missed_pongs", 1.5, 0, 8.0)
    assert fact_fields(fact)["last_pong_s"] == 1.5 and fact_fields(fact)["reason"] == "missed_pongs"
