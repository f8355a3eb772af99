"""The asyncio driver (tomproto/node.py) around a stub endpoint: messages published in arrival
order, a send waiting for room times out, the timer survives a failing handler and refreshes the
wall clock, and a closed node does nothing more."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import tomproto.node as node_module
from tomproto.core.paths import Path, Transport
from tomproto.core.runtime import RuntimeSettings
from tomproto.core.transport_events import Received
from tomproto.errors import ConnectionLost, TransportError
from tomproto.identity import Identity
from tomproto.node import Node, ReceivedMessage
from tomproto.sealing import seal_envelope
from tomproto.wire.envelope import MessageType


class StubEndpoint:
    """What the node uses of an Endpoint: sends wait forever (or fail at once), releases recorded."""

    def __init__(self, *, fail_now: bool = True) -> None:
        self.on_delivery: Any = None
        self.on_event: Any = None
        self.released: list[Received] = []
        self.fail_now = fail_now

    def release(self, frame: Received, refusal: object) -> None:
        self.released.append(frame)

    def send_frame_now(self, *_: object, **__: object) -> None:
        if self.fail_now:
            raise TransportError("stub: no connection")

    async def send_frame(self, *_: object) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        pass


def make_node(settings: RuntimeSettings | None = None, *, fail_now: bool = True) -> tuple[Node, StubEndpoint]:
    endpoint = StubEndpoint(fail_now=fail_now)
    return Node(Identity.from_seed(bytes(32)), endpoint, settings), endpoint  # type: ignore[arg-type]


def frame_from(sender: Identity, node: Node, payload: bytes) -> Received:
    sealed = seal_envelope(sender, node.node_id, MessageType.Chat, payload, now_ms=time.time_ns() // 1_000_000)
    return Received(sender.node_id, 1, sealed.wire, Transport.stream, Path.direct, time.monotonic(), 4)


def test_held_messages_are_published_after_the_one_whose_taking_delivered_them() -> None:
    async def scenario() -> list[bytes]:
        node, _ = make_node(RuntimeSettings(inbox_messages=1))
        sender = Identity.from_seed(bytes([1]) * 32)
        for index in range(3):  # the first fills the inbox, the next two are held
            node._received(frame_from(sender, node, b"m%d" % index))
        assert node.runtime.held_frames == 2
        published: list[bytes] = []
        node.events.subscribe(lambda message: published.append(message.plaintext), ReceivedMessage)
        node._messages_waiting()
        await node.close()
        return published

    assert asyncio.run(scenario()) == [b"m0", b"m1", b"m2"]


def test_a_send_waiting_for_room_fails_after_the_delivery_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_module, "DELIVERY_DEADLINE_S", 0.05)

    async def scenario() -> int:
        node, _ = make_node(fail_now=False)
        node.send_message_nowait(Identity.from_seed(bytes([2]) * 32).node_id, b"stuck")
        await asyncio.wait_for(asyncio.gather(*node._sending), 2.0)
        failures = node.counters.transport_failures
        await node.close()
        return failures

    assert asyncio.run(scenario()) == 1


def test_the_timer_is_re_armed_when_its_handler_raises_and_refreshes_the_wall_clock() -> None:
    async def scenario() -> None:
        node, _ = make_node()
        node.runtime.wall_offset_s = 0.0

        def broken(now: float) -> list[object]:
            raise RuntimeError("a bug")

        node.runtime.handle_timer = broken  # type: ignore[method-assign,assignment]
        with pytest.raises(RuntimeError):
            node._on_timer()
        assert node._wakeup.armed
        assert abs(node.runtime.wall_offset_s - (time.time() - time.monotonic())) < 1.0
        await node.close()

    asyncio.run(scenario())


def test_a_closed_node_refuses_to_receive_or_send_and_handles_nothing_more() -> None:
    async def scenario() -> None:
        node, endpoint = make_node()
        waiting = asyncio.ensure_future(node.receive())
        await asyncio.sleep(0)
        await node.close()
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(waiting, 1.0)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(node.receive(), 1.0)
        peer = Identity.from_seed(bytes([3]) * 32)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(node.send_message(peer.node_id, b"too late"), 1.0)
        received = node.counters.received.copy()
        node._received(frame_from(peer, node, b"after close"))
        node._on_timer()
        assert node.counters.received == received and node.runtime.inbox_size == 0 and endpoint.released == []
        assert not node._wakeup.armed

    asyncio.run(scenario())
