"""tom-relay and responder arguments: durations carry a unit, a busy address is named, IPv6 works."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tomproto.identity import Identity
from tomproto.relay import protocol as wire

TIMEOUT_S = 60


def tom_stress(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tomstress", *arguments], capture_output=True, text=True, timeout=TIMEOUT_S
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A UDP port on 127.0.0.1 that someone else holds."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", "give a unit, e.g. 100ms, 2s, 5m or 1h"),
        ("0s", "too short: at least 100ms"),
        ("50ms", "too short: at least 100ms"),
        ("soon", "invalid duration"),
    ],
)
def test_relay_stats_interval_needs_a_positive_duration_with_a_unit(value: str, message: str) -> None:
    result = tom_stress("relay", "--listen", "127.0.0.1:0", "--stats-interval", value)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.replace("│", " ").split())  # typer draws the message in a box
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["relay", "responder"])
def test_an_address_in_use_is_named_and_exits_2(command: str, busy_port: int) -> None:
    result = tom_stress(command, "--listen", f"127.0.0.1:{busy_port}")
    assert result.returncode == 2, result.stderr
    assert f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_relay_names_which_of_its_addresses_is_in_use(busy_port: int) -> None:
    result = tom_stress("relay", "--listen", "127.0.0.1:0", "--listen", f"127.0.0.1:{busy_port}")
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in result.stderr


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="needs IPv6 on the loopback (sysctl net.ipv6.conf.lo.disable_ipv6=0)")
@pytest.mark.parametrize("command", ["relay", "responder"])
def test_ipv6_listen_addresses_work(command: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tomstress", command, "--listen", "[::1]:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        listening = json.loads(process.stdout.readline())
        address = (listening.get("addresses") or [listening.get("listen")])[0]
        host, _, port_text = address.rpartition(":")
        assert host == "[::1]" and int(port_text) > 0, listening
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
            peer.settimeout(TIMEOUT_S / 4)
            if command == "relay":  # it answers there: a HELLO gets its CHALLENGE
                peer.sendto(wire.hello(Identity.generate().node_id.raw), ("::1", int(port_text)))
                assert peer.recv(65536)[0] == wire.CHALLENGE
            else:  # the port is held on ::1 (ping itself dials from IPv4 today)
                with pytest.raises(OSError) as refused:  # noqa: PT011 - its errno is checked below
                    peer.bind(("::1", int(port_text)))
                assert refused.value.errno == errno.EADDRINUSE
    finally:
        process.terminate()
        process.communicate(timeout=TIMEOUT_S)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--relay", "127.0.0.1:0"], "give the port the peer listens on"),
        (["--relay", "256.0.0.1:7478"], "is not an IPv4 address"),
        (["--listen", "[::1]:0", "--relay", "127.0.0.1:7478"], "same IP family"),
    ],
)
def test_bad_responder_relay_arguments_exit_2(arguments: list[str], message: str) -> None:
    result = tom_stress("responder", *arguments)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "codes"),
    [(["relay"], "0 stopped"), (["responder"], "3 the relay given with --relay never answered")],
)
def test_server_help_lists_the_exit_codes(command: list[str], codes: str) -> None:
    result = subprocess.run([sys.executable, "-m", "tomstress", *command, "--help"], capture_output=True, text=True,
                            timeout=TIMEOUT_S, env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    assert result.returncode == 0
    assert "Exit codes: 0 stopped" in result.stdout and codes in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max-campaigns", "0"], "error: --max-campaigns 0: give 1 or more"),
        (["--campaign-budget", "fast"], "error: --campaign-budget 'fast': give RATE[/BURST]"),
        (["--campaign-budget", "0"], "the rate must be above 0"),
        (["--campaign-budget", "100/0.5"], "the burst must be at least 1"),
        (["--campaign-budget", "100/x"], "give RATE[/BURST]"),
    ],
)
def test_bad_campaign_flags_are_named_and_exit_2(arguments: list[str], message: str) -> None:
    result = tom_stress("responder", "--listen", "127.0.0.1:0", "--quiet", *arguments)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
