"""Frames held while the inbox is full are all delivered, in order, once the application reads
(sans-IO)."""

from __future__ import annotations

import os

from tomproto.core.paths import Path, Transport
from tomproto.core.runtime import Runtime, RuntimeSettings
from tomproto.core.runtime_events import ReleaseFrame
from tomproto.core.transport_events import Received
from tomproto.identity import Identity
from tomproto.sealing import seal_envelope
from tomproto.wire.envelope import MessageType

WALL_OFFSET_S = 1.7e9


def test_every_held_frame_is_delivered_in_order_when_the_application_reads_again() -> None:
    me, sender = Identity.generate(), Identity.generate()
    runtime = Runtime(me, RuntimeSettings(inbox_messages=2), 0.0, wall_offset_s=WALL_OFFSET_S,
                      random_bytes=os.urandom)  # fmt: skip
    runtime.grant(sender.node_id, 1000, 1000, 100, 0.0)
    ids = []
    for index in range(6):
        sealed = seal_envelope(sender, me.node_id, MessageType.Chat, b"%d" % index, now_ms=int(WALL_OFFSET_S * 1000))
        ids.append(sealed.envelope.id)
        frame = Received(sender.node_id, 1, sealed.wire, Transport.stream, Path.direct, 0.0, stream_id=4 * index)
        released = [output for output in runtime.receive(frame, 0.0) if isinstance(output, ReleaseFrame)]
        assert len(released) == (1 if index < 2 else 0)  # 2 fit the inbox; 4 are held
    assert (runtime.inbox_size, runtime.held_frames) == (2, 4)
    taken, releases = [], 0
    while True:
        message, outputs = runtime.take_message(0.0)
        if message is None:
            break
        taken.append(message.message_id)
        releases += sum(1 for output in outputs if isinstance(output, ReleaseFrame))
    assert taken == ids  # all six, in the order they came
    assert releases == 4 and runtime.held_frames == 0
    assert runtime.counters.held == 4  # each held once
