"""Campaign budgets over real loopback sockets: a campaign that said Hello is never throttled, a
peer that did not is, and sees it; a responder refuses a campaign past --max-campaigns, and a
responder too old for the hello, or lacking a capability, ends a ping before its first probe.

In-process Nodes where the counters are what we check, real processes where the CLI's exit code
and message are; every wait is bounded."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.processes import finish, start_ping, start_responder
from tomproto.identity import Identity
from tomproto.node import Node, ReceivedMessage
from tomproto.transport import Transport
from tomstress.archive import Archive, validate_archive
from tomstress.benchmarks.children import read_json_line, wait_or_kill
from tomstress.cli.common import EXIT_UNREACHABLE
from tomstress.cli.ping import _exit_code
from tomstress.ping import HELLO_WAIT_S, TOO_OLD, PingConfig, PingRun
from tomstress.probe import (
    CAP_DATAGRAM,
    CAPABILITIES,
    Budget,
    Hello,
    Probe,
    Welcome,
    encode_hello,
    encode_probe,
    parse_reply,
    parse_welcome,
)
from tomstress.responder import CampaignPolicy, Responder

BOUND_S = 30.0
BURST = 300


def run(coroutine: object) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 60))  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], what: str, bound_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {bound_s} s: {what}"
        await asyncio.sleep(0.02)


class Client:
    """A campaign's node, by hand: it says Hello (or not) and fires probes as fast as it can."""

    def __init__(self, node: Node, responder: Responder) -> None:
        self.node = node
        assert responder.node is not None
        self.peer = responder.node.node_id
        self.address = responder.node.endpoint.local_address
        self.replies: set[int] = set()
        self.welcome: Welcome | None = None
        node.events.subscribe(self._received, ReceivedMessage)
        # The responder's replies come as fast as our probes: we grant it what a ping would.
        node.grant(self.peer, 1000.0, 2000.0, 60.0)

    def _received(self, message: ReceivedMessage) -> None:
        reply = parse_reply(message.plaintext)
        if reply is not None:
            self.replies.add(reply.seq)
        elif (welcome := parse_welcome(message.plaintext)) is not None:
            self.welcome = welcome

    async def hello(self, budget: Budget) -> Welcome:
        hello = Hello("test", CAPABILITIES, "burst", budget)
        self.node.send_message_nowait(self.peer, encode_hello(hello), address=self.address)
        await until(lambda: self.welcome is not None, "the Welcome")
        assert self.welcome is not None
        return self.welcome

    def burst(self, count: int) -> None:
        for seq in range(count):
            probe = Probe("burst", "ping", seq, time.monotonic_ns(), time.time_ns(), 64)
            self.node.send_message_nowait(self.peer, encode_probe(probe), address=self.address)


async def started(responder_class: type[Responder] = Responder) -> tuple[Responder, Node]:
    responder = await responder_class.start(Identity.generate(), "127.0.0.1", 0)
    client = await Node.start(Identity.generate(), "127.0.0.1", 0)
    return responder, client


def test_a_budgeted_campaign_burst_of_300_is_never_throttled() -> None:
    async def scenario() -> None:
        responder, node = await started()
        try:
            client = Client(node, responder)
            welcome = await client.hello(Budget(2020.0, 4140.0, 60.0))  # what a 1 ms ping asks
            assert welcome.accepted and welcome.budget == Budget(2020.0, 4140.0, 60.0), welcome
            client.burst(BURST)
            await until(lambda: len(client.replies) == BURST, f"all {BURST} replies")
            assert responder.node is not None
            assert responder.node.counters.refused["throttled"] == 0
            assert node.counters.refused_by_peers["throttled"] == 0
            assert responder.counts["probes_answered"] == BURST
            assert responder.counts["campaigns_granted"] == 1
        finally:
            await node.close()
            await responder.close()

    run(scenario())


def test_an_unbudgeted_burst_of_300_is_throttled_and_the_sender_sees_every_refusal() -> None:
    async def scenario() -> None:
        responder, node = await started()
        try:
            assert responder.node is not None
            receiver = responder.node.counters.refused
            client = Client(node, responder)  # no Hello: the anonymous bucket (10/s, bursts of 20)
            client.burst(BURST)
            seen = node.counters.refused_by_peers
            await until(lambda: receiver["throttled"] + responder.counts["probes_answered"] >= BURST,
                        "every probe answered or throttled")  # fmt: skip
            # Refusals travel back as stream resets: wait for the sender to have seen them all.
            await until(lambda: seen["throttled"] == receiver["throttled"], "the sender to see every refusal")
            assert receiver["throttled"] > 0, "300 probes at once must overflow the anonymous bucket"
            assert seen["throttled"] == receiver["throttled"]
            assert responder.counts["campaigns_granted"] == 0
        finally:
            await node.close()
            await responder.close()

    run(scenario())


class OldResponder(Responder):
    """A responder from before the hello: Hello is just not a probe to it."""

    def _answer_hello(self, message: ReceivedMessage, hello: Hello) -> None:
        self.counts["not_a_probe"] += 1


class NoDatagramResponder(Responder):
    capabilities = tuple(name for name in CAPABILITIES if name != CAP_DATAGRAM)


def ping_in_process(
    responder_class: type[Responder], tmp_path: Path, transport: Transport = Transport.stream
) -> tuple[dict[str, object], float, PingConfig]:
    result: list[tuple[dict[str, object], float, PingConfig]] = []

    async def scenario() -> None:
        responder, node = await started(responder_class)
        try:
            assert responder.node is not None
            config = PingConfig(responder.node.node_id, responder.node.endpoint.local_address, 5, 0.05, 10.0, 64,
                                transport)  # fmt: skip
            with Archive.create(tmp_path, "hello", "ping") as archive:
                began = time.monotonic()
                summary = await PingRun(config, node, archive, asyncio.Event()).run()
                result.append((summary, time.monotonic() - began, config))
        finally:
            await node.close()
            await responder.close()

    run(scenario())
    return result[0]


def test_a_responder_too_old_for_the_hello_fails_the_ping_fast_and_clearly(tmp_path: Path) -> None:
    summary, elapsed_s, config = ping_in_process(OldResponder, tmp_path)
    assert summary["hello_error"] == TOO_OLD and "responder too old" in TOO_OLD
    assert summary["reached"] is False and summary["probes"]["sent"] == 0  # type: ignore[index]
    assert summary["loss"]["percent"] is None  # type: ignore[index] # never a loss figure
    assert elapsed_s < HELLO_WAIT_S - 1, "the hello's ACK without a Welcome is enough to tell"
    assert _exit_code(summary, None, config, False) == EXIT_UNREACHABLE


def test_a_responder_without_a_capability_the_run_needs_is_named(tmp_path: Path) -> None:
    summary, _, config = ping_in_process(NoDatagramResponder, tmp_path, Transport.datagram)
    assert "lacks the capability datagram" in str(summary["hello_error"])
    assert summary["probes"]["sent"] == 0  # type: ignore[index]
    assert _exit_code(summary, None, config, False) == EXIT_UNREACHABLE


def test_past_max_campaigns_the_next_campaign_is_refused_with_the_reason(tmp_path: Path) -> None:
    responder = start_responder(0, None, "--max-campaigns", "1")
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    target = ("--connect", responder.node_id, "--target-addr", responder.address)
    first = start_ping(*target, "--continuous", "--interval", "100ms", output_dir=first_dir)
    try:
        deadline = time.monotonic() + BOUND_S
        while not any('"ev":"probe"' in path.read_text() for path in first_dir.glob("*.jsonl")):
            assert time.monotonic() < deadline and first.poll() is None, "the first campaign never probed"
            time.sleep(0.05)
        second = start_ping(*target, "--count", "3", output_dir=second_dir)
        code, summary, stderr = finish(second, 60)
        assert code == EXIT_UNREACHABLE == 3, stderr
        assert "error: the responder refused the run: serving 1 campaign already" in stderr
        assert summary is not None and summary["probes"]["sent"] == 0 and summary["loss"]["percent"] is None
        assert summary["hello"]["welcome"]["accepted"] is False
        (archive,) = second_dir.glob("*.jsonl")
        validate_archive(archive)
        assert '"error_kind":"refused"' in archive.read_text()
    finally:
        first.send_signal(signal.SIGINT)
        code, summary, stderr = finish(first, 60)
        responder.process.send_signal(signal.SIGTERM)
        try:
            final = read_json_line(responder.process, "stopped", BOUND_S)
        finally:
            wait_or_kill(responder.process, 10)
    assert code == 130 and summary is not None and summary["probes"]["lost"] == 0, stderr
    assert summary["hello"]["welcome"]["accepted"] is True
    assert final["counts"]["campaigns_granted"] == 1 and final["counts"]["campaigns_refused"] == 1, final
    assert final["refused"].get("throttled", 0) == 0, final


def test_a_campaign_slot_is_freed_when_its_node_goes_and_a_large_request_is_capped() -> None:
    async def scenario() -> None:
        policy = CampaignPolicy(Budget(100.0, 200.0, 3600.0), max_campaigns=1)
        responder = await Responder.start(Identity.generate(), "127.0.0.1", 0, policy=policy)
        try:
            first_node = await Node.start(Identity.generate(), "127.0.0.1", 0)
            first = await Client(first_node, responder).hello(Budget(5000.0, 10_000.0, 60.0))
            assert first.accepted and first.budget == Budget(100.0, 200.0, 60.0) and "capped" in first.reason
            second_node = await Node.start(Identity.generate(), "127.0.0.1", 0)
            try:
                refused = await Client(second_node, responder).hello(Budget(10.0, 20.0, 60.0))
                assert not refused.accepted and refused.reason.startswith("serving 1 campaign already"), refused
                await first_node.close()
                await until(lambda: not responder.campaigns, "the first campaign's slot to be freed")
                third_node = await Node.start(Identity.generate(), "127.0.0.1", 0)
                try:
                    third = await Client(third_node, responder).hello(Budget(10.0, 20.0, 60.0))
                    assert third.accepted and third.budget == Budget(10.0, 20.0, 60.0) and third.reason == ""
                finally:
                    await third_node.close()
            finally:
                await second_node.close()
            assert (responder.counts["campaigns_granted"], responder.counts["campaigns_refused"],
                    responder.counts["campaigns_capped"]) == (2, 1, 1)  # fmt: skip
        finally:
            await responder.close()

    run(scenario())
