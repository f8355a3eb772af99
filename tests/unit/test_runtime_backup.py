"""The runtime keeps a message whose recipient went down after it left (sans-IO)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from tomproto.core.delivery import DELIVERY_DEADLINE_S, DeliveryStatus
from tomproto.core.runtime import Runtime, RuntimeSettings
from tomproto.core.runtime_events import BackupStored, TransmitEnvelope
from tomproto.identity import Identity


def _transmissions(outputs: Sequence[object]) -> list[TransmitEnvelope]:
    return [output for output in outputs if isinstance(output, TransmitEnvelope)]


def test_a_message_that_left_on_a_connection_that_died_is_kept_when_its_resend_cannot_leave() -> None:
    runtime = Runtime(Identity.generate(), RuntimeSettings(), 0.0, wall_offset_s=1e9, random_bytes=os.urandom)
    recipient = Identity.generate().node_id
    message_id, outputs = runtime.send(recipient, b"hello", 0.0)
    (first,) = _transmissions(outputs)
    runtime.transmitted(first.token, 0.0)  # it left, on a connection that then died
    assert runtime.tracker.get(message_id).status is DeliveryStatus.sent  # type: ignore[union-attr]
    now = DELIVERY_DEADLINE_S + 0.1
    outputs = runtime.handle_timer(now)  # no ACK: resent
    stored: list[BackupStored] = []
    for _ in range(3):  # every transport attempt of the resend fails: the recipient is down
        (attempt,) = [tx for tx in _transmissions(outputs) if tx.message_id == message_id]
        outputs = runtime.transmit_failed(attempt.token, now, "dial timed out")
        stored += [output for output in outputs if isinstance(output, BackupStored)]
        now += 1.1
        outputs += runtime.handle_timer(now)
    assert [entry.message_id for entry in stored] == [message_id]
    assert message_id in runtime.store
    assert runtime.tracker.get(message_id).status is DeliveryStatus.sent  # type: ignore[union-attr]
