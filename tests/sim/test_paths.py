"""The node's own transport core finds, keeps and loses direct paths on the simulated network, in
virtual time, with no socket and no sleep: punching through NATs, staying on the relay where
punching cannot work, falling back when the direct path dies and returning when it heals."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from tests.sim.links import Impairment
from tests.sim.nat import EIM_APDF, SYMMETRIC
from tests.sim.world import A_PRIVATE, B_PRIVATE, HOME_A_PUBLIC, RELAY, World
from tomproto.core.direct_path import KEEPALIVE_S, RETRY_S, SILENT_AFTER_S
from tomproto.core.paths import Path, Transport
from tomproto.core.relay_link import REREGISTER_MAX_S
from tomproto.core.transport_events import PathChanged, RelayRegistered, RelayRegistrationFailed

SEEDS = range(200)
LOSSY = Impairment(delay_s=0.020, jitter_s=0.005, loss=0.05)
DIAL_AT_S = 40.0  # registration under loss may take several HELLOs


def probe(seq: int) -> bytes:
    return b"probe %06d" % seq


def send_probes(world: World, start_s: float, count: int, spacing_s: float) -> None:
    """Alice sends `count` probes to Bob on their connection, one every `spacing_s`."""

    def sender(seq: int) -> Callable[[float], None]:
        def send(now: float) -> None:
            handle = world.alice.core.connection_to(world.bob.identity.node_id)
            assert handle is not None, f"no connection for probe {seq}"
            world.alice.core.send_frame(handle, probe(seq), now)

        return send

    for seq in range(count):
        world.at(start_s + seq * spacing_s, world.alice, sender(seq))


def probes_received(world: World) -> list[bytes]:
    return [event.data for event in world.bob.received() if event.transport is Transport.stream]


def test_across_eim_nats_with_5_percent_loss_a_relayed_connection_goes_direct_within_1_s() -> None:
    from_connection, from_dial = [], []
    for seed in SEEDS:
        with World(seed, impairment=LOSSY) as world:
            world.register()
            world.dial_through_relay(DIAL_AT_S)
            world.run_while(lambda: world.direct_at(world.alice) is None or world.direct_at(world.bob) is None,
                            DIAL_AT_S + 10)  # fmt: skip
            connected = world.connected_at(world.alice)
            assert connected is not None, seed
            alice_direct, bob_direct = world.direct_at(world.alice), world.direct_at(world.bob)
            assert alice_direct is not None and bob_direct is not None, seed  # else run_while raised
            slowest = max(alice_direct, bob_direct)
            from_connection.append(slowest - connected)
            from_dial.append(slowest - DIAL_AT_S)
            assert slowest - connected <= 1.0, f"seed {seed}: direct {slowest - connected:.3f} s after connecting"
    from_connection.sort()
    print(
        f"\n{len(SEEDS)} seeds, 5 % loss each way: both sides direct after the connection came up in "
        f"p50 {statistics.median(from_connection) * 1000:.0f} ms, max {from_connection[-1] * 1000:.0f} ms; "
        f"after the dial p50 {statistics.median(from_dial) * 1000:.0f} ms, max {max(from_dial) * 1000:.0f} ms"
    )


def test_across_a_symmetric_nat_the_connection_stays_on_the_relay_and_every_probe_arrives_once() -> None:
    for seed in range(20):
        with World(seed, impairment=Impairment(delay_s=0.020, jitter_s=0.005, loss=0.02),
                   nat_a=SYMMETRIC, nat_b=EIM_APDF) as world:  # fmt: skip
            world.register()
            world.dial_through_relay(DIAL_AT_S)
            world.run_while(lambda: world.connected_at(world.alice) is None, DIAL_AT_S + 10)
            start = world.network.now + 0.1
            send_probes(world, start, count=100, spacing_s=0.05)
            world.run_until(start + 100 * 0.05 + 10)
            # Every probe, exactly once (each on its own stream: a loss may reorder them).
            assert sorted(probes_received(world)) == [probe(seq) for seq in range(100)], seed
            assert {event.path for event in world.bob.received()} == {Path.relay}
            assert not any(isinstance(event, PathChanged) for event in world.alice.events + world.bob.events)
            handle = world.alice.core.connection_to(world.bob.identity.node_id)
            assert world.alice.core.info(handle or 0).punches_sent > 0


def test_a_black_holed_direct_path_falls_back_to_the_relay_in_time_and_returns_after_it_heals() -> None:
    for seed in range(20):
        with World(seed, impairment=Impairment(delay_s=0.020, jitter_s=0.002)) as world:
            world.register()
            world.dial_through_relay(DIAL_AT_S)
            world.run_while(lambda: world.direct_at(world.alice) is None, DIAL_AT_S + 5)
            hole_at = world.network.now + 2.0
            heal_at = hole_at + 15.0
            world.network.partition([A_PRIVATE], [B_PRIVATE], start_s=hole_at, end_s=heal_at)
            send_probes(world, world.network.now + 0.01, count=500, spacing_s=0.05)  # through it all
            world.run_until(heal_at + RETRY_S + 10)
            fell_back = world.relay_at(world.alice, after_s=hole_at)
            assert fell_back is not None and fell_back - hole_at <= SILENT_AFTER_S + KEEPALIVE_S, seed
            returned = world.direct_at(world.alice, after_s=heal_at)
            assert returned is not None and returned - heal_at <= RETRY_S + 1.0, seed
            assert sorted(probes_received(world)) == [probe(seq) for seq in range(500)], seed
            paths = {event.path for event in world.bob.received()}
            assert paths == {Path.direct, Path.relay}, seed


def test_a_node_whose_relay_restarted_and_stayed_away_registers_again_by_itself() -> None:
    with World(11, impairment=Impairment(delay_s=0.010)) as world:
        world.register()
        restart_at = world.network.now + 1.0
        world.network.scheduler.call_at(restart_at, world.restart_relay)
        # The restarted relay answers Alice's next keep-alive with "not registered" and she
        # registers again at once; then it is out of her reach for 80 s: she notices its
        # silence, and her registrations time out until it is back.
        world.network.partition([A_PRIVATE], [RELAY], start_s=restart_at + 20, end_s=restart_at + 100)
        world.run_until(restart_at + 180)
        failed = [entry.at_s for entry in world.alice.timed(RelayRegistrationFailed)]
        again = [entry.at_s for entry in world.alice.timed(RelayRegistered)]
        assert len(failed) >= 2 and all(restart_at + 20 <= at <= restart_at + 100 for at in failed)
        assert len(again) == 3  # the first registration, after "not registered", after the silence
        assert restart_at < again[1] < restart_at + 20
        assert restart_at + 100 < again[2] <= restart_at + 100 + REREGISTER_MAX_S + 1
        assert world.relay.stats()["nodes"][world.alice.identity.node_id.raw.hex()]["address"].startswith(HOME_A_PUBLIC)


def test_the_same_seed_gives_the_same_packets_and_events_and_another_seed_does_not() -> None:
    def run(seed: int) -> tuple[list[str], list[object]]:
        with World(seed, impairment=LOSSY, trace=True) as world:
            world.register()
            world.dial_through_relay(DIAL_AT_S)
            send_probes(world, DIAL_AT_S + 1.5, count=20, spacing_s=0.05)
            world.run_until(DIAL_AT_S + 5)
            assert world.network.trace is not None
            return list(world.event_trace()), list(world.network.trace)

    first, again, other = run(7), run(7), run(8)
    assert len(first[0]) > 20 and any("PathChanged" in line for line in first[0])
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]


def test_the_relay_refuses_a_forged_and_a_replayed_registration_and_keeps_the_owners() -> None:
    from tests.sim.recorder import Recorder
    from tomproto.identity import Identity
    from tomproto.relay import protocol as wire

    with World(3, impairment=Impairment(delay_s=0.010)) as world:
        captured: list[bytes] = []
        world.network.tap = lambda now, source, destination, data: (
            captured.append(data) if data[:1] == bytes([wire.REGISTER]) else None
        )
        world.register()
        owner = world.alice.identity.node_id.raw
        owners_register = next(data for data in captured if wire.parse_register(data).node_id == owner)  # type: ignore[union-attr]
        attacker = Recorder()
        world.network.attach(attacker, ("198.51.100.66", 6666))
        # Replayed: the owner's own REGISTER, sent again from elsewhere.
        attacker.queue(owners_register, RELAY)
        world.network.poll(attacker)
        world.run_until(world.network.now + 1)
        # Forged: a fresh challenge for the owner's NodeId, answered with another key's signature.
        attacker.queue(wire.hello(owner), RELAY)
        world.network.poll(attacker)
        world.run_until(world.network.now + 1)
        challenge = next(data for data in attacker.payloads if data[0] == wire.CHALLENGE)
        impostor = Identity.generate()
        forged = bytearray(wire.register(impostor, challenge[1:33], challenge[33:], []))
        forged[1:33] = owner  # claims the owner's NodeId; signed with the impostor's key
        attacker.queue(bytes(forged), RELAY)
        world.network.poll(attacker)
        world.run_until(world.network.now + 1)
        refusals = [data for data in attacker.payloads if data[0] == wire.REFUSED]
        assert [data[1] for data in refusals] == [wire.Refusal.unknown_challenge, wire.Refusal.bad_signature]
        # The owner is still registered where it was, and still reachable through the relay.
        assert world.relay.stats()["nodes"][owner.hex()]["address"].startswith(HOME_A_PUBLIC + ":")
        world.dial_through_relay(world.network.now)
        world.run_while(lambda: world.connected_at(world.bob) is None, world.network.now + 10)
        assert world.connected_at(world.alice) is not None
