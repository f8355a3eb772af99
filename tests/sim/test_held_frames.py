"""Frames a node holds, in virtual time: a received frame's stream stays open until the node
releases it, so a receiver that holds frames stops its sender, first by the sender's own
back-pressure (`writable`), then, for a sender that ignores it, by QUIC's stream credit; a frame
released with a refusal reaches the sender as `FrameRefused` on the stream it was sent on."""

from __future__ import annotations

import pytest

from tests.sim.world import B_PUBLIC, World
from tomproto.core.endpoint import FrameSent
from tomproto.core.framing import FrameRefusal
from tomproto.core.quic import TransportSettings
from tomproto.core.transport_events import FrameRefused, Received

CONNECTED_BY_S = 3.0


def connect(world: World) -> tuple[int, int]:
    """Alice dials Bob at his public address; both sides' connection handles."""
    alice, bob = world.alice, world.bob
    world.at(1.0, alice, lambda now: alice.core.dial(bob.identity.node_id, B_PUBLIC, now))
    world.run_until(CONNECTED_BY_S)
    a_side = alice.core.connection_to(bob.identity.node_id)
    b_side = bob.core.connection_to(alice.identity.node_id)
    assert a_side is not None and b_side is not None
    return a_side, b_side


def send(world: World, handle: int, count: int, at_s: float, sent: list[FrameSent]) -> None:
    """Alice sends `count` frames at `at_s`, whether or not her core says it is writable."""

    def frames(now: float) -> None:
        for _ in range(count):
            sent.append(world.alice.core.send_frame(handle, b"frame %04d" % len(sent), now))

    world.at(at_s, world.alice, frames)


def release(world: World, held: list[Received], at_s: float, refusals: dict[int, FrameRefusal] | None = None) -> None:
    """Bob releases `held` at `at_s`: accepted, or refused as `refusals` says (by stream)."""
    refusals = refusals or {}

    def done(now: float) -> None:
        for received in held:
            assert received.stream_id is not None
            world.bob.core.release_stream(received.connection, received.stream_id, now,
                                          refusals.get(received.stream_id))  # fmt: skip

    world.at(at_s, world.bob, done)


@pytest.mark.parametrize("holds", [True, False])
def test_a_receiver_that_holds_frames_stops_the_sender_until_it_releases_them(holds: bool) -> None:
    with World(3, behind_nats=False) as world:
        alice, bob = world.alice, world.bob
        a_side, b_side = connect(world)
        bob.holds = holds
        limit = world.settings.max_open_send_streams
        sent: list[FrameSent] = []
        send(world, a_side, limit, 4.0, sent)
        world.run_until(6.0)  # ample: a round trip is 20 ms
        received = bob.received()
        assert [event.data for event in received] == [b"frame %04d" % index for index in range(limit)]
        assert {event.stream_id for event in received} == {frame.stream_id for frame in sent}
        if not holds:  # the control: released at once, the sender's streams closed at once
            assert alice.core.writable(a_side)
            return
        assert not alice.core.writable(a_side)
        assert alice.core._connections[a_side].open_send_streams == limit
        assert bob.core._connections[b_side].held_streams == limit
        assert bob.core.writable(b_side)  # the frames Bob holds do not stop Bob sending to Alice
        release(world, received, 6.0)
        world.run_until(8.0)
        assert alice.core.writable(a_side)
        assert alice.core.open_streams(a_side) == 0 and bob.core.open_streams(b_side) == 0
        assert bob.core._connections[b_side].held_streams == 0
        assert not alice.timed(FrameRefused)
        assert bob.core.counters.frames_received == limit
        # Each stream finished both ways, so aioquic grants Alice one more stream for each (it
        # tells her in a MAX_STREAMS once she has used enough of the credit she has).
        credit = bob.core._connections[b_side].quic._local_max_streams_bidi
        assert credit.value == world.settings.max_peer_streams + limit


def test_a_frame_released_with_a_refusal_reaches_its_sender_as_frame_refused_on_its_stream() -> None:
    with World(4, behind_nats=False) as world:
        alice, bob = world.alice, world.bob
        a_side, _ = connect(world)
        bob.holds = True
        sent: list[FrameSent] = []
        send(world, a_side, 1 + len(FrameRefusal), 4.0, sent)
        world.run_until(5.0)
        held = bob.received()
        assert len(held) == 1 + len(FrameRefusal)
        by_stream = {event.stream_id: event for event in held}
        # The first frame is accepted, each other one refused with a code of its own.
        refusals = {frame.stream_id: refusal for frame, refusal in zip(sent[1:], FrameRefusal, strict=True)}
        release(world, held, 5.0, refusals)
        world.run_until(7.0)
        refused = [entry.event for entry in alice.timed(FrameRefused) if isinstance(entry.event, FrameRefused)]
        assert refused == [
            FrameRefused(bob.identity.node_id, a_side, stream_id, refusal) for stream_id, refusal in refusals.items()
        ]
        assert sent[0].stream_id not in {event.stream_id for event in refused}
        assert by_stream[sent[0].stream_id].data == b"frame 0000"
        assert alice.core.writable(a_side) and alice.core.open_streams(a_side) == 0
        names = {refusal.name: 1 for refusal in FrameRefusal}
        assert bob.core.counters.frames_refused == names
        assert alice.core.counters.frames_refused_by_peer == names


def test_a_sender_that_ignores_back_pressure_is_stopped_by_quic_at_max_peer_streams_held_frames() -> None:
    settings = TransportSettings(max_peer_streams=16, max_open_send_streams=4)
    with World(5, behind_nats=False, settings=settings) as world:
        alice, bob = world.alice, world.bob
        a_side, b_side = connect(world)
        bob.holds = True
        sent: list[FrameSent] = []
        send(world, a_side, 40, 4.0, sent)  # far past `writable`, and past Bob's stream credit
        world.run_until(6.0)
        first = bob.received()
        assert len(first) == settings.max_peer_streams
        assert bob.core._connections[b_side].held_streams == settings.max_peer_streams
        # Alice's QUIC keeps the rest of her streams blocked: they wait for stream credit.
        assert len(alice.core._connections[a_side].quic._streams_blocked_bidi) == 40 - settings.max_peer_streams
        world.run_until(20.0)  # holding longer (keep-alives, acks) gives Alice no more credit
        assert len(bob.received()) == settings.max_peer_streams
        # Releasing some lets exactly as many more in.
        release(world, first[:5], 20.0)
        world.run_until(22.0)
        assert len(bob.received()) == settings.max_peer_streams + 5
        assert bob.core._connections[b_side].held_streams == settings.max_peer_streams
        # Releasing everything, as it comes, lets every frame in.
        bob.holds = False
        release(world, bob.received()[5:], 22.0)
        world.run_until(25.0)
        assert [event.data for event in bob.received()] == [b"frame %04d" % index for index in range(40)]
        assert alice.core.open_streams(a_side) == 0 and bob.core._connections[b_side].held_streams == 0


def test_releasing_a_stream_that_is_gone_does_nothing() -> None:
    with World(6, behind_nats=False) as world:
        alice, bob = world.alice, world.bob
        a_side, b_side = connect(world)
        bob.holds = True
        sent: list[FrameSent] = []
        send(world, a_side, 3, 4.0, sent)
        world.run_until(5.0)
        first, second, third = bob.received()
        release(world, [first], 5.0)
        release(world, [first], 5.0, {sent[0].stream_id: FrameRefusal.rejected})  # released already
        world.run_until(6.0)
        assert not alice.timed(FrameRefused)  # the second release sent nothing
        core = bob.core
        world.at(6.0, bob, lambda now: core.release_stream(b_side, 10_000, now))  # never opened
        world.at(6.0, bob, lambda now: core.release_stream(b_side + 100, 0, now))  # no such connection
        world.at(6.0, bob, lambda now: core.release_stream(b_side, sent[0].stream_id ^ 1, now))  # one of ours
        world.at(6.0, bob, lambda now: core.close(now))
        release(world, [second, third], 6.0, {sent[2].stream_id: FrameRefusal.unavailable})  # closed meanwhile
        world.run_until(8.0)
        assert not alice.timed(FrameRefused)
        assert not core._connections or core._connections[b_side].held_streams == 0
