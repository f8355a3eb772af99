"""tom-relay's rules, driven packet by packet through its sans-IO core with the time given: only
the key holder registers a NodeId, forged and replayed registrations change nothing, it forwards
and rate-limits, its tables stay bounded by what is registered now, and it never answers an
unproven address with more bytes than it was sent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.relaying import register_with
from tomproto.core.relay_server import (
    SWEEP_INTERVAL_S,
    Outgoing,
    RelayCore,
    RelaySettings,
)
from tomproto.identity import Identity
from tomproto.relay import protocol as wire

NOW = 9_000.0
EXPIRY_S = 60
SECRET = b"s" * 32
PAYLOAD = b"\x40" * 100

Address = tuple[str, int]


def relay(**settings: object) -> RelayCore:
    return RelayCore(Identity.generate(), RelaySettings(expiry_s=EXPIRY_S, **settings), secret=SECRET, now=NOW)  # type: ignore[arg-type]


def challenge_for(core: RelayCore, identity: Identity, address: Address, now: float, socket: int = 0) -> bytes:
    [answer] = core.handle(wire.hello(identity.node_id.raw), address, now, socket)
    assert answer.data[0] == wire.CHALLENGE and answer.address == address and answer.socket == socket
    return answer.data


def register(core: RelayCore, identity: Identity, address: Address, now: float, socket: int = 0) -> None:
    register_with(core, identity, address, now, socket=socket, candidates=[("192.168.1.5", 7400)])


def forward(core: RelayCore, address: Address, to: Identity, now: float, payload: bytes = PAYLOAD) -> list[Outgoing]:
    return core.handle(wire.forward(to.node_id.raw, payload), address, now)


def keep_alive(core: RelayCore, identity: Identity, address: Address, now: float) -> list[Outgoing]:
    return core.handle(wire.keepalive(identity.node_id.raw), address, now)


def refusal(answers: list[Outgoing]) -> int:
    [answer] = answers
    assert answer.data[0] == wire.REFUSED
    return answer.data[1]


def registered_address(core: RelayCore, identity: Identity) -> str | None:
    node = core.stats()["nodes"].get(identity.node_id.hex)
    return None if node is None else str(node["address"])


def pairs(core: RelayCore) -> dict[tuple[str, str], int]:
    return {(pair["from"], pair["to"]): pair["bytes"] for pair in core.stats()["pairs"]}


# -- registration ------------------------------------------------------------------------------


def test_a_registration_signed_by_another_key_is_refused_and_the_owner_keeps_hers() -> None:
    core = relay()
    alice, bob, mallory = Identity.generate(), Identity.generate(), Identity.generate()
    alice_address, bob_address, mallory_address = ("192.0.2.1", 1), ("192.0.2.2", 2), ("203.0.113.9", 9)
    register(core, alice, alice_address, NOW)
    register(core, bob, bob_address, NOW)
    # Mallory gets a real challenge for Alice's NodeId at her own address, and signs it herself.
    challenge = challenge_for(core, alice, mallory_address, NOW)
    forged = wire.register(mallory, challenge[1:33], challenge[33:], [])
    forged = forged[:1] + alice.node_id.raw + forged[33:]
    assert refusal(core.handle(forged, mallory_address, NOW)) == wire.Refusal.bad_signature
    assert core.events["refused_bad_signature"] == 1
    assert registered_address(core, alice) == "192.0.2.1:1"
    # Mallory cannot relay as anyone; Alice's traffic still reaches Bob under her name.
    assert refusal(forward(core, mallory_address, bob, NOW)) == wire.Refusal.not_registered
    [relayed] = forward(core, alice_address, bob, NOW)
    assert relayed == Outgoing(wire.relayed(alice.node_id.raw, PAYLOAD), bob_address, 0)


def test_a_replayed_registration_is_refused_from_the_same_address_and_from_another() -> None:
    core = relay()
    carol, carol_address = Identity.generate(), ("192.0.2.3", 3)
    challenge = challenge_for(core, carol, carol_address, NOW)
    registration = wire.register(carol, challenge[1:33], challenge[33:], [])
    assert core.handle(registration, carol_address, NOW)[0].data[0] == wire.REGISTERED
    assert refusal(core.handle(registration, carol_address, NOW + 1)) == wire.Refusal.unknown_challenge
    assert core.events["refused_spent_challenge"] == 1
    elsewhere = ("198.51.100.7", 3)
    assert refusal(core.handle(registration, elsewhere, NOW + 1)) == wire.Refusal.unknown_challenge
    assert core.events["refused_unknown_challenge"] == 1  # the challenge names another address
    assert registered_address(core, carol) == "192.0.2.3:3"
    assert refusal(forward(core, elsewhere, carol, NOW + 1)) == wire.Refusal.not_registered


def test_a_challenge_is_good_only_on_the_socket_that_issued_it() -> None:
    core = relay()
    dave, dave_address = Identity.generate(), ("192.0.2.4", 4)
    register(core, dave, dave_address, NOW, socket=0)
    challenge = challenge_for(core, dave, dave_address, NOW + 2, socket=1)
    registration = wire.register(dave, challenge[1:33], challenge[33:], [])
    assert refusal(core.handle(registration, dave_address, NOW + 2, socket=0)) == wire.Refusal.unknown_challenge
    assert core.events["refused_unknown_challenge"] == 1
    # Dave's registration stays on socket 0: a keep-alive there is answered, one on socket 1 is not.
    [ack] = core.handle(wire.keepalive(dave.node_id.raw), dave_address, NOW + 2, socket=0)
    assert ack == Outgoing(wire.keepalive_ack(dave_address), dave_address, 0)
    refused = core.handle(wire.keepalive(dave.node_id.raw), dave_address, NOW + 2, socket=1)
    assert refusal(refused) == wire.Refusal.not_registered


def test_a_late_challenge_is_refused() -> None:
    core = relay(challenge_ttl_s=10.0)
    erin, erin_address = Identity.generate(), ("192.0.2.5", 5)
    challenge = challenge_for(core, erin, erin_address, NOW)
    registration = wire.register(erin, challenge[1:33], challenge[33:], [])
    assert refusal(core.handle(registration, erin_address, NOW + 11)) == wire.Refusal.unknown_challenge
    assert registered_address(core, erin) is None


def test_a_registration_from_a_new_address_moves_the_node_there() -> None:
    core = relay()
    frank, old, new = Identity.generate(), ("192.0.2.6", 6), ("192.0.2.6", 60006)  # its NAT rebound
    peer, peer_address = Identity.generate(), ("192.0.2.7", 7)
    register(core, frank, old, NOW)
    register(core, peer, peer_address, NOW)
    register(core, frank, new, NOW + 1)
    assert registered_address(core, frank) == "192.0.2.6:60006"
    assert refusal(forward(core, old, peer, NOW + 1)) == wire.Refusal.not_registered
    assert forward(core, peer_address, frank, NOW + 1)[0].address == new


def test_a_new_node_id_at_an_address_takes_it_over_and_the_old_ones_expiry_does_not_unregister_it() -> None:
    core = relay()
    address, peer, peer_address = ("192.0.2.8", 8), Identity.generate(), ("192.0.2.9", 9)
    first, second = Identity.generate(), Identity.generate()  # a node restarted with a fresh identity
    register(core, peer, peer_address, NOW)
    register(core, first, address, NOW)
    register(core, second, address, NOW + EXPIRY_S / 2)
    assert registered_address(core, first) is None
    # No relayed packet for the old NodeId lands on the new node.
    assert forward(core, peer_address, first, NOW + EXPIRY_S / 2)[0].data[0] == wire.UNREACHABLE
    keep_alive(core, peer, peer_address, NOW + EXPIRY_S)
    keep_alive(core, second, address, NOW + EXPIRY_S)
    core.sweep(NOW + EXPIRY_S + 1)
    [relayed] = forward(core, address, peer, NOW + EXPIRY_S + 1)
    assert relayed.data == wire.relayed(second.node_id.raw, PAYLOAD)


def test_a_full_relay_refuses_newcomers_and_still_renews_the_registered() -> None:
    core = relay(max_nodes=2)
    nodes = [Identity.generate() for _ in range(3)]
    for index, node in enumerate(nodes[:2]):
        register(core, node, (f"192.0.2.{index + 1}", 1), NOW)
    challenge = challenge_for(core, nodes[2], ("192.0.2.3", 1), NOW)
    registration = wire.register(nodes[2], challenge[1:33], challenge[33:], [])
    assert refusal(core.handle(registration, ("192.0.2.3", 1), NOW)) == wire.Refusal.full
    register(core, nodes[0], ("192.0.2.1", 2), NOW)  # a registered node may move
    assert len(core.stats()["nodes"]) == 2


# -- forwarding, calls, rate limits -------------------------------------------------------------


def test_forwarding_goes_to_the_destinations_socket_and_names_the_source() -> None:
    core = relay()
    alice, bob = Identity.generate(), Identity.generate()
    register(core, alice, ("192.0.2.1", 1), NOW, socket=0)
    register(core, bob, ("2001:db8::2", 2), NOW, socket=1)
    assert forward(core, ("192.0.2.1", 1), bob, NOW) == [
        Outgoing(wire.relayed(alice.node_id.raw, PAYLOAD), ("2001:db8::2", 2), 1)
    ]
    nobody = Identity.generate()
    assert forward(core, ("192.0.2.1", 1), nobody, NOW) == [
        Outgoing(wire.unreachable(nobody.node_id.raw), ("192.0.2.1", 1), 0)
    ]
    stats = core.stats()["nodes"]
    assert (stats[alice.node_id.hex]["packets_in"], stats[alice.node_id.hex]["bytes_in"]) == (1, 100)
    assert (stats[bob.node_id.hex]["packets_out"], stats[bob.node_id.hex]["bytes_out"]) == (1, 100)


def test_a_call_introduces_both_sides_at_once_each_with_the_others_observed_address_first() -> None:
    core = relay()
    alice, bob = Identity.generate(), Identity.generate()
    register(core, alice, ("198.51.100.1", 1111), NOW)
    register(core, bob, ("203.0.113.2", 2222), NOW)
    to_bob, to_alice = core.handle(wire.call(bob.node_id.raw), ("198.51.100.1", 1111), NOW)
    assert to_bob.address == ("203.0.113.2", 2222) and to_alice.address == ("198.51.100.1", 1111)
    assert wire.parse_call_from(to_bob.data) == (alice.node_id.raw, (("198.51.100.1", 1111), ("192.168.1.5", 7400)))
    assert wire.parse_call_from(to_alice.data) == (bob.node_id.raw, (("203.0.113.2", 2222), ("192.168.1.5", 7400)))


def test_the_rate_limit_drops_excess_packets_and_refills_with_time() -> None:
    core = relay(packets_per_s=10.0, bytes_per_s=1e9)
    alice, bob = Identity.generate(), Identity.generate()
    register(core, alice, ("192.0.2.1", 1), NOW)
    register(core, bob, ("192.0.2.2", 2), NOW)
    relayed = [len(forward(core, ("192.0.2.1", 1), bob, NOW, b"\x40")) for _ in range(15)]
    assert relayed == [1] * 10 + [0] * 5
    assert sum(len(forward(core, ("192.0.2.1", 1), bob, NOW + 0.5, b"\x40")) for _ in range(10)) == 5
    assert core.stats()["nodes"][alice.node_id.hex]["dropped_rate"] == 10


def test_the_rate_limit_drops_excess_bytes_even_when_packets_are_left() -> None:
    core = relay(packets_per_s=1_000.0, bytes_per_s=1_000.0)
    alice, bob = Identity.generate(), Identity.generate()
    register(core, alice, ("192.0.2.1", 1), NOW)
    register(core, bob, ("192.0.2.2", 2), NOW)
    relayed = [len(forward(core, ("192.0.2.1", 1), bob, NOW, PAYLOAD)) for _ in range(12)]
    assert relayed == [1] * 10 + [0] * 2
    assert len(forward(core, ("192.0.2.1", 1), bob, NOW, b"\x40")) == 0  # not a single byte left
    assert core.stats()["nodes"][bob.node_id.hex]["bytes_out"] == 1_000
    assert core.stats()["nodes"][alice.node_id.hex]["dropped_rate"] == 3


# -- expiry and bounded tables ----------------------------------------------------------------


def test_a_registration_expires_unless_kept_alive_and_the_sweep_is_due_every_five_seconds() -> None:
    core = relay()
    assert core.next_deadline() == NOW + SWEEP_INTERVAL_S
    kept, dropped = Identity.generate(), Identity.generate()
    register(core, kept, ("192.0.2.1", 1), NOW)
    register(core, dropped, ("192.0.2.2", 2), NOW)
    assert keep_alive(core, kept, ("192.0.2.1", 1), NOW + EXPIRY_S - 1)[0].data == wire.keepalive_ack(("192.0.2.1", 1))
    core.sweep(NOW + EXPIRY_S)
    assert len(core.stats()["nodes"]) == 2  # not yet: expiry is more than expiry_s unseen
    core.sweep(NOW + EXPIRY_S + 1)
    assert core.next_deadline() == NOW + EXPIRY_S + 1 + SWEEP_INTERVAL_S
    assert list(core.stats()["nodes"]) == [kept.node_id.hex] and core.events["expired"] == 1
    assert refusal(forward(core, ("192.0.2.2", 2), kept, NOW + EXPIRY_S + 1)) == wire.Refusal.not_registered


def test_fresh_node_ids_cannot_grow_the_pair_counters_beyond_the_live_registrations() -> None:
    core = relay()
    bob, bob_address = Identity.generate(), ("192.0.2.1", 7000)
    now = NOW
    register(core, bob, bob_address, now)
    for wave in range(4):  # every wave: fresh NodeIds that send to Bob once, then vanish
        for index in range(25):
            address = (f"10.{wave}.{index}.1", 5000)
            register(core, Identity.generate(), address, now)
            forward(core, address, bob, now)
        assert len(pairs(core)) == 25
        now += EXPIRY_S / 2
        keep_alive(core, bob, bob_address, now)
        now += EXPIRY_S / 2 + 1
        keep_alive(core, bob, bob_address, now)
        core.sweep(now)
        stats = core.stats()
        assert list(stats["nodes"]) == [bob.node_id.hex] and stats["pairs"] == []
    assert core.events["expired"] == 100


def test_a_pair_is_forgotten_when_its_destination_expires_and_the_senders_own_counters_are_kept() -> None:
    core = relay()
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    addresses = {alice: ("192.0.2.1", 1), bob: ("192.0.2.2", 2), carol: ("192.0.2.3", 3)}
    for identity, address in addresses.items():
        register(core, identity, address, NOW)
    forward(core, addresses[alice], bob, NOW)
    forward(core, addresses[alice], carol, NOW)
    forward(core, addresses[alice], carol, NOW)
    assert pairs(core) == {(alice.node_id.hex, bob.node_id.hex): 100, (alice.node_id.hex, carol.node_id.hex): 200}
    # Bob goes quiet and expires; Alice and Carol stay.
    later = NOW + EXPIRY_S + 1
    for identity in (alice, carol):
        keep_alive(core, identity, addresses[identity], NOW + EXPIRY_S / 2)
    core.sweep(later)
    assert pairs(core) == {(alice.node_id.hex, carol.node_id.hex): 200}
    # Bob comes back: his pair starts again from what goes through now.
    register(core, bob, addresses[bob], later)
    forward(core, addresses[alice], bob, later)
    assert pairs(core)[alice.node_id.hex, bob.node_id.hex] == 100
    # A node's own counters last as long as its registration: all Alice sent.
    assert core.stats()["nodes"][alice.node_id.hex]["bytes_in"] == 400


def test_pairs_beyond_the_cap_are_summed_not_listed() -> None:
    core = relay(max_pairs=2)
    alice, alice_address = Identity.generate(), ("192.0.2.1", 1)
    register(core, alice, alice_address, NOW)
    others = [Identity.generate() for _ in range(4)]
    for index, other in enumerate(others):
        register(core, other, (f"192.0.2.{10 + index}", 1), NOW)
        forward(core, alice_address, other, NOW)
    stats = core.stats()
    assert len(stats["pairs"]) == 2 and stats["untracked_pair_bytes"] == 200
    assert sum(pairs(core).values()) + stats["untracked_pair_bytes"] == stats["nodes"][alice.node_id.hex]["bytes_in"]


def test_the_stats_name_an_ipv6_node_in_brackets() -> None:
    core = relay()
    node = Identity.generate()
    register(core, node, ("2001:db8::7", 40000), NOW)
    assert registered_address(core, node) == "[2001:db8::7]:40000"


# -- no amplification -------------------------------------------------------------------------

_KINDS = sorted(wire.RELAY_KINDS | {0x00, 0x3F, 0x40, 0xFF})
_ATTACKER = Identity.from_seed(b"a" * 32)


@st.composite
def _packets(draw: st.DrawFn) -> bytes:
    """Anything an unregistered (maybe spoofed) source can send: junk of every kind, padded and
    short HELLOs, and REGISTERs shaped right but with made-up challenges."""
    kind = draw(st.sampled_from(_KINDS))
    shape = draw(st.sampled_from(["junk", "hello", "register"]))
    if shape == "hello":
        return wire.hello(_ATTACKER.node_id.raw)[: draw(st.integers(1, wire.HELLO_BYTES + 10))]
    if shape == "register":
        candidates = draw(st.lists(st.just(("192.0.2.1", 1)), max_size=wire.MAX_CANDIDATES))
        return wire.register(
            _ATTACKER,
            draw(st.binary(min_size=32, max_size=32)),
            draw(st.binary(min_size=32, max_size=32)),
            candidates,
        )
    return bytes([kind]) + draw(st.binary(max_size=80))


@settings(max_examples=300, deadline=None)
@given(packets=st.lists(_packets(), min_size=1, max_size=10))
def test_no_unregistered_source_gets_more_bytes_back_than_it_sent(packets: list[bytes]) -> None:
    core = RelayCore(Identity.from_seed(b"r" * 32), RelaySettings(), secret=SECRET, now=NOW)
    for data in packets:
        answers = core.handle(data, ("203.0.113.66", 4444), NOW)
        assert sum(len(answer.data) for answer in answers) <= len(data), (data.hex(), answers)


def test_no_answer_in_a_registration_is_larger_than_its_request() -> None:
    core = relay()
    node, address = Identity.generate(), ("192.0.2.1", 1)
    hello = wire.hello(node.node_id.raw)
    [challenge] = core.handle(hello, address, NOW)
    registration = wire.register(node, challenge.data[1:33], challenge.data[33:], [])
    [registered] = core.handle(registration, address, NOW)
    keepalive = wire.keepalive(node.node_id.raw)
    [ack] = core.handle(keepalive, address, NOW)
    for request, answer in ((hello, challenge), (registration, registered), (keepalive, ack)):
        assert len(answer.data) <= len(request)
    assert core.handle(hello[:-1], address, NOW) == [] and core.events["hello_unpadded"] == 1
