"""The QUIC transport over real loopback sockets, in one process: authentication, caps, dials."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aioquic.asyncio.client import connect as aioquic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from tomproto.core.certificates import node_certificate
from tomproto.core.framing import FRAME_CAP_BYTES, frame
from tomproto.identity import Identity, NodeId
from tomproto.transport import (
    ALPN,
    MAX_DATAGRAM_BYTES,
    DatagramTooLarge,
    DialTimeout,
    Endpoint,
    FrameRefusal,
    FrameRefused,
    PeerAuthenticationError,
    Received,
    TransportSettings,
)

BOUND_S = 10.0  # every wait in these tests is bounded


class Inbox:
    """Frames and datagrams an endpoint received, with the peer that sent them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[NodeId | None, bytes]] = asyncio.Queue()

    def __call__(self, delivery: Received) -> None:
        self.queue.put_nowait((delivery.peer, delivery.data))

    async def next(self) -> tuple[NodeId | None, bytes]:
        return await asyncio.wait_for(self.queue.get(), BOUND_S)


async def open_endpoint(
    identity: Identity, port: int = 0, settings: TransportSettings | None = None, *, inbox: Inbox | None = None,
    echo: bool = False, relay: tuple[str, int] | None = None,
) -> Endpoint:
    """An endpoint on loopback that puts what it receives in `inbox`, or answers "echo:" + it."""
    opened = await Endpoint.open(identity, "127.0.0.1", port, settings, relay=relay)
    if inbox is not None:
        opened.on_delivery = inbox
    elif echo:

        def answer(delivery: Received) -> None:
            opened.reply(delivery.connection, b"echo:" + delivery.data, delivery.transport)

        opened.on_delivery = answer
    return opened


@asynccontextmanager
async def endpoint(identity: Identity, port: int = 0, **options: object) -> AsyncIterator[Endpoint]:
    opened = await open_endpoint(identity, port, **options)  # type: ignore[arg-type]
    try:
        yield opened
    finally:
        await opened.close()


def run(coroutine: object) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 60))  # type: ignore[arg-type]


def test_listener_learns_the_dialers_node_id_from_its_certificate() -> None:
    # Fails if aioquic's non-public client-certificate switch stops working.
    async def scenario() -> None:
        dialer, listener = Identity.generate(), Identity.generate()
        inbox = Inbox()
        async with endpoint(listener, inbox=inbox) as server, endpoint(dialer) as client:
            await client.send_frame(listener.node_id, b"who am i", server.local_address)
            peer, data = await inbox.next()
            assert (peer, data) == (dialer.node_id, b"who am i")
            assert server.connection_to(dialer.node_id) is not None

    run(scenario())


def test_a_wrong_node_id_is_a_failed_connection_with_a_clear_error() -> None:
    async def scenario() -> None:
        listener, impostor_target = Identity.generate(), Identity.generate()
        async with endpoint(listener) as server, endpoint(Identity.generate()) as client:
            with pytest.raises(PeerAuthenticationError, match="not the NodeId dialled"):
                await client.connect(impostor_target.node_id, server.local_address)
            assert client.connection_to(impostor_target.node_id) is None

    run(scenario())


class RecordingProtocol(QuicConnectionProtocol):
    """An aioquic client that records the QUIC events it sees."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: list[events.QuicEvent] = []
        self.changed = asyncio.Event()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        self.seen.append(event)
        self.changed.set()
        if not isinstance(event, events.StreamDataReceived):  # streams are read from `seen` only
            super().quic_event_received(event)

    async def wait_for(self, kind: type, stream_id: int | None = None) -> events.QuicEvent:
        async def found() -> events.QuicEvent:
            while True:
                for event in self.seen:
                    on_stream = stream_id is None or getattr(event, "stream_id", None) == stream_id
                    if isinstance(event, kind) and on_stream:
                        return event
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(found(), BOUND_S)


def raw_client_configuration(identity: Identity | None) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)
    if identity is not None:
        configuration.certificate, configuration.private_key = node_certificate(identity)
    return configuration


def test_a_dialer_without_a_certificate_is_refused_and_delivers_nothing() -> None:
    async def scenario() -> None:
        inbox = Inbox()
        async with endpoint(Identity.generate(), inbox=inbox) as server:
            host, port = server.local_address
            async with aioquic_connect(
                host, port, configuration=raw_client_configuration(None), create_protocol=RecordingProtocol
            ) as client:
                stream_id = client._quic.get_next_available_stream_id()
                client._quic.send_stream_data(stream_id, frame(b"anonymous"), end_stream=True)
                client.transmit()
                terminated = await client.wait_for(events.ConnectionTerminated)  # type: ignore[attr-defined]
                assert "certificate" in terminated.reason_phrase
            assert inbox.queue.empty()
            assert server.connections() == []

    run(scenario())


def test_a_length_prefix_above_the_cap_resets_that_stream_and_the_node_keeps_serving() -> None:
    async def scenario() -> None:
        client_identity = Identity.generate()
        async with endpoint(Identity.generate(), echo=True) as server:
            host, port = server.local_address
            async with aioquic_connect(
                host, port, configuration=raw_client_configuration(client_identity), create_protocol=RecordingProtocol
            ) as client:
                quic = client._quic
                hostile = quic.get_next_available_stream_id()
                quic.send_stream_data(hostile, (FRAME_CAP_BYTES + 1).to_bytes(4, "big"))  # no body, no FIN
                client.transmit()
                reset = await client.wait_for(events.StreamReset, hostile)  # type: ignore[attr-defined]
                assert reset.stream_id == hostile
                assert server.counters.streams_refused["frame_too_large"] == 1
                # Same connection, another stream: still served.
                honest = quic.get_next_available_stream_id()
                quic.send_stream_data(honest, frame(b"still there?"), end_stream=True)
                client.transmit()
                while True:
                    received = await client.wait_for(events.StreamDataReceived)  # type: ignore[attr-defined]
                    if b"echo:still there?" in received.data:
                        break
                    client.seen.remove(received)  # type: ignore[attr-defined]

    run(scenario())


def test_simultaneous_dials_converge_on_one_connection_dialled_by_the_lower_node_id() -> None:
    async def scenario() -> None:
        first, second = Identity.generate(), Identity.generate()
        inbox_first, inbox_second = Inbox(), Inbox()
        async with endpoint(first, inbox=inbox_first) as a, endpoint(second, inbox=inbox_second) as b:
            await asyncio.gather(
                a.connect(second.node_id, b.local_address), b.connect(first.node_id, a.local_address)
            )
            a_side, b_side = a.connection_to(second.node_id), b.connection_to(first.node_id)
            assert a_side is not None and b_side is not None
            lower_is_first = first.node_id < second.node_id
            assert a_side.dialer is lower_is_first and b_side.dialer is not lower_is_first
            await a.send_frame(second.node_id, b"a->b")
            await b.send_frame(first.node_id, b"b->a")
            assert await inbox_second.next() == (first.node_id, b"a->b")
            assert await inbox_first.next() == (second.node_id, b"b->a")

    run(scenario())


def test_a_datagram_too_large_for_one_packet_is_refused_and_the_next_ones_still_go() -> None:
    # aioquic keeps a DATAGRAM frame that fits no packet at the head of its queue for ever, and
    # every datagram after it waits behind it: it must never get there.
    async def scenario() -> None:
        listener = Identity.generate()
        inbox = Inbox()
        async with endpoint(listener, inbox=inbox) as server, endpoint(Identity.generate()) as client:
            await client.send_datagram(listener.node_id, b"x" * MAX_DATAGRAM_BYTES, server.local_address)
            assert (await inbox.next())[1] == b"x" * MAX_DATAGRAM_BYTES  # the largest that fits
            with pytest.raises(DatagramTooLarge, match="does not fit one QUIC packet"):
                await client.send_datagram(listener.node_id, b"y" * (MAX_DATAGRAM_BYTES + 1))
            await client.send_datagram(listener.node_id, b"after")
            assert (await inbox.next())[1] == b"after"

    run(scenario())


def test_a_peer_that_restarted_is_redialled_at_once_through_its_reset_notice() -> None:
    async def scenario() -> None:
        server_identity = Identity.generate()
        inbox = Inbox()
        async with endpoint(Identity.generate(), inbox=inbox) as client:
            old = await open_endpoint(server_identity, echo=True)
            address = old.local_address
            await client.send_frame(server_identity.node_id, b"one", address)
            assert (await inbox.next())[1] == b"echo:one"
            assert old._transport is not None
            old._transport.close()  # a crash: the peer says nothing
            await asyncio.sleep(0.05)  # the socket closes on the next loop iterations
            async with endpoint(server_identity, port=address[1], echo=True) as restarted:
                stale = client.connection_to(server_identity.node_id)
                assert stale is not None
                await client.send_frame(server_identity.node_id, b"lost on the stale connection", address)
                for _ in range(100):  # bounded: 100 x 20 ms
                    current = client.connection_to(server_identity.node_id)
                    if current is None or current.connection != stale.connection:
                        break
                    await asyncio.sleep(0.02)
                assert client.counters.reset_notices_honoured == 1
                assert restarted.counters.reset_notices_sent >= 1
                await client.send_frame(server_identity.node_id, b"two", address)
                assert (await inbox.next())[1] == b"echo:two"

    run(scenario())


def test_low_memory_profile_caps_connections_and_advertised_streams() -> None:
    async def scenario() -> None:
        settings = TransportSettings.low_memory()
        tight = TransportSettings(
            max_connections=1, max_peer_streams=settings.max_peer_streams, handshake_timeout_s=1.0
        )
        listener = Identity.generate()
        server = await Endpoint.open(listener, "127.0.0.1", 0, tight)
        try:
            async with endpoint(Identity.generate()) as first, endpoint(Identity.generate()) as second:
                connection = await first.connect(listener.node_id, server.local_address)
                quic = first.core._connection(connection.connection).quic
                assert quic._remote_max_streams_bidi == settings.max_peer_streams
                with pytest.raises(DialTimeout):
                    await second.connect(listener.node_id, server.local_address, timeout_s=1.0)
                assert server.counters.connections_refused >= 1
        finally:
            await server.close()

    run(scenario())


def test_a_stream_cap_limits_streams_at_once_not_streams_in_a_connections_life() -> None:
    async def scenario() -> None:
        listener, dialer = Identity.generate(), Identity.generate()
        inbox = Inbox()
        server = await open_endpoint(listener, settings=TransportSettings(max_peer_streams=4), echo=True)
        try:
            async with endpoint(dialer, inbox=inbox) as client:
                for index in range(20):  # one at a time: never more than one stream open
                    await client.send_frame(listener.node_id, b"%d" % index, server.local_address)
                    assert await inbox.next() == (listener.node_id, b"echo:%d" % index)
        finally:
            await server.close()

    run(scenario())


class Keeper:
    """A delivery handler that keeps every frame (returns True): the test releases them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Received] = asyncio.Queue()

    def __call__(self, delivery: Received) -> bool:
        self.queue.put_nowait(delivery)
        return True

    async def next(self) -> Received:
        return await asyncio.wait_for(self.queue.get(), BOUND_S)


def test_a_handler_that_keeps_frames_stops_the_sender_at_the_open_stream_limit_until_it_releases_them() -> None:
    async def scenario() -> None:
        listener = Identity.generate()
        keeper = Keeper()
        async with endpoint(listener) as server, endpoint(Identity.generate()) as client:
            server.on_delivery = keeper
            limit = client.settings.max_open_send_streams
            sent = [await client.send_frame(listener.node_id, b"%d" % index, server.local_address)
                    for index in range(limit)]  # fmt: skip
            held = [await keeper.next() for _ in range(limit)]
            stream_ids = {s.stream_id for s in sent}
            assert len(stream_ids) == limit and None not in stream_ids
            assert {delivery.stream_id for delivery in held} == stream_ids
            # Every frame is in and acknowledged, but none released: the next send waits.
            blocked = asyncio.ensure_future(client.send_frame(listener.node_id, b"one more"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(blocked), 0.3)
            assert not blocked.done()
            for delivery in held:
                server.release(delivery)
            more = await asyncio.wait_for(blocked, BOUND_S)
            assert more.stream_id is not None and more.stream_id not in stream_ids
            last = await keeper.next()
            assert (last.data, last.stream_id) == (b"one more", more.stream_id)
            server.release(last)
            server.release(last)  # a second time: nothing

    run(scenario())


def test_a_refused_frame_reaches_its_sender_as_frame_refused_on_the_stream_it_went_on() -> None:
    async def scenario() -> None:
        listener = Identity.generate()
        keeper = Keeper()
        refused: asyncio.Queue[FrameRefused] = asyncio.Queue()
        async with endpoint(listener) as server, endpoint(Identity.generate()) as client:
            server.on_delivery = keeper
            client.on_event = lambda event: refused.put_nowait(event) if isinstance(event, FrameRefused) else None
            accepted = await client.send_frame(listener.node_id, b"fine", server.local_address)
            rejected = await client.send_frame(listener.node_id, b"badly signed")
            first, second = await keeper.next(), await keeper.next()
            assert (first.stream_id, second.stream_id) == (accepted.stream_id, rejected.stream_id)
            server.release(first)
            server.release(second, FrameRefusal.rejected)
            event = await asyncio.wait_for(refused.get(), BOUND_S)
            connection = client.connection_to(listener.node_id)
            assert connection is not None and rejected.stream_id is not None
            assert event == FrameRefused(listener.node_id, connection.connection, rejected.stream_id,
                                         FrameRefusal.rejected)  # fmt: skip
            # The accepted one closed as usual: no refusal for it, no stream left open.
            for _ in range(100):  # bounded: 100 x 10 ms
                if client.core.open_streams(connection.connection) == 0:
                    break
                await asyncio.sleep(0.01)
            assert client.core.open_streams(connection.connection) == 0 and refused.empty()
            assert server.counters.frames_refused == {"rejected": 1}

    run(scenario())


def test_releasing_a_frame_whose_stream_the_peer_stopped_does_nothing() -> None:
    async def scenario() -> None:
        keeper = Keeper()
        async with endpoint(Identity.generate()) as server:
            server.on_delivery = keeper
            host, port = server.local_address
            async with aioquic_connect(
                host, port, configuration=raw_client_configuration(Identity.generate()),
                create_protocol=RecordingProtocol,
            ) as client:  # fmt: skip
                quic = client._quic
                stream_id = quic.get_next_available_stream_id()
                quic.send_stream_data(stream_id, frame(b"never mind"), end_stream=True)
                client.transmit()
                held = await keeper.next()
                quic.stop_stream(stream_id, 0x77)  # the sender no longer wants an answer
                client.transmit()
                # aioquic answers STOP_SENDING by resetting its direction with the same code.
                reset = await client.wait_for(events.StreamReset, stream_id)  # type: ignore[attr-defined]
                assert reset.error_code == 0x77
                server.release(held, FrameRefusal.throttled)  # nothing to release: no error
                assert server.counters.frames_refused == {}

    run(scenario())
