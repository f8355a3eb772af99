"""Hub failover between real processes: four `tom-stress group-node`s on 127.0.0.1, the hub
SIGKILLed while the members chatter (tomstress/benchmarks/failover.py runs them; every wait there
has a deadline, every child is killed at the end). The shadow takes over, the members follow it,
messages flow through it, none twice, and the figures are the simulation's
(tests/sim/test_group_failover_reference.py) within a second."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tomstress.benchmarks.failover import FailoverRun, run_failover
from tomstress.groups import FactRecord

CHATTER_S = 0.2
PING_INTERVAL_S = 3.0  # GroupSettings' defaults: the shadow pings the hub every 3 s,
PONG_GRACE_S = 0.5  # ... a pong may be 0.5 s late,
MEMBER_ACK_TIMEOUT_S = 3.0  # ... and a member reports the hub after 3 s without an acknowledgement
SIM_TOLERANCE_S = 1.0


def facts(records: list[FactRecord], kind: str) -> list[FactRecord]:
    return [record for record in records if record.kind == kind]


@pytest.mark.slow
def test_when_the_hub_is_killed_the_shadow_takes_over_and_the_group_goes_on(tmp_path: Path) -> None:
    run = run_failover(tmp_path, chatter_s=CHATTER_S)
    survivors, shadow, figures = run.survivors, run.shadow, run.figures

    # Exactly one promotion, by the shadow (the lowest NodeId among B, C, D); all follow it.
    promoted = {node: facts(run.records[node], "HubPromoted") for node in survivors}
    assert {node: len(found) for node, found in promoted.items() if found} == {shadow: 1}
    assert (figures.promotions, figures.new_hub, figures.old_hub) == (1, shadow, run.node_ids["a"])
    assert figures.migrated_to == dict.fromkeys(survivors, shadow)
    assert figures.chain_restored_after_crash_s is not None

    # Messages go on among the three: each hears both others, sent after the promotion, through the new hub.
    assert run.promoted_wall_s is not None
    for node in survivors:
        heard = {
            record.fields["sender"] for record in facts(run.records[node], "GroupMessageReceived")
            if record.fields["sent_at_ms"] / 1000 >= run.promoted_wall_s and record.fields["hub"] == shadow
        }  # fmt: skip
        assert heard == set(survivors) - {node}, node[:8]
        assert node in figures.first_message_after_crash_s

    # No message twice to any member (the dead hub's included); none of the members' own lost.
    for node in survivors:
        received = Counter(record.fields["message_id"] for record in facts(run.records[node], "GroupMessageReceived"))
        assert [message_id for message_id, copies in received.items() if copies > 1] == [], node[:8]
    assert run.members.duplicated == 0 and run.from_old_hub.duplicated == 0
    assert run.members.sent > 0 and run.members.lost == 0, run.members.lost_ids

    # The figures. Members chatter, so reports come: promotion within the report path's bound.
    detection_s, promotion_s = figures.detection_after_crash_s, figures.promotion_after_crash_s
    assert detection_s is not None and promotion_s is not None and figures.promotion_after_last_pong_s is not None
    assert detection_s <= promotion_s
    assert promotion_s < MEMBER_ACK_TIMEOUT_S + CHATTER_S + 1.0
    assert 3.5 - 0.5 <= figures.promotion_after_last_pong_s <= 6.5 + 1.0
    assert abs(figures.promotion_after_last_pong_s - simulated_promotion_after_last_pong_s(run)) < SIM_TOLERANCE_S


def simulated_promotion_after_last_pong_s(run: FailoverRun) -> float:
    """What the simulation gives, from this run's own facts: with no report, the second missed
    pong (last pong + 6.5 s); with one, the first missed pong (last pong + 3.5 s) or the report
    itself if it came later (the shadow's own, or a member's as the shadow counted it)."""
    figures, shadow = run.figures, run.shadow
    (promoted,) = facts(run.records[shadow], "HubPromoted")
    last_pong_s = promoted.fields["last_pong_s"]
    one_missed_s = PING_INTERVAL_S + PONG_GRACE_S
    if figures.reason == "missed_pongs":
        return 2 * PING_INTERVAL_S + PONG_GRACE_S
    assert figures.reason == "missed_pong_and_report"
    reports = [record.time_s() for record in facts(run.records[shadow], "HubUnreachableReported")]
    reports += [record.time_s() for record in facts(run.records[shadow], "HubSuspected") if record.fields["reports"]]
    first_report_s = min(at for at in reports if at >= run.crash_s)
    return max(one_missed_s, first_report_s - last_pong_s)
