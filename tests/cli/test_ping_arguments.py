"""Bad ping and responder arguments: a clear message and exit code 2, before any traffic."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time

import pytest

from tomproto.identity import Identity
from tomstress.probe_sizes import probe_size_limits

NODE = Identity.from_seed(bytes(32)).node_id.hex


def tom_stress(*arguments: str) -> subprocess.CompletedProcess[str]:
    # A wide "terminal": rich wraps help and error boxes at the width it is given.
    return subprocess.run(
        [sys.executable, "-m", "tomstress", *arguments], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--local", "--interval", "100"], "give a unit"),
        (["--local", "--timeout", "soon"], "invalid duration"),
        (["--local", "--interval", "0.5ms"], "--interval must be at least 1ms"),
        (["--local", "--connect", NODE, "--target-addr", "127.0.0.1:1"], "either --local"),
        (["--connect", NODE], "--connect needs"),
        (["--connect", NODE.upper(), "--target-addr", "127.0.0.1:7400"], "lowercase"),
        (["--connect", NODE, "--target-addr", "127.0.0.1"], "HOST:PORT"),
        (["--connect", NODE, "--target-addr", "127.0.0.1:70000"], "ports are 0 to 65535"),
        (["--local", "--count", "0"], "--count"),
        (["--local", "--size", "8"], "use --size 56 or more"),
        (["--local", "--datagram", "--size", "1500"], "use --size 259 or less"),
        (["--local", "--name", "a/b"], "--name: archive name 'a/b' cannot be part of a file name"),
        (["--connect", NODE, "--target-addr", "256.1.1.1:9"], "'256.1.1.1' is not an IPv4 address"),
        (["--connect", NODE, "--target-addr", "1.2.3:9"], "'1.2.3' is not an IPv4 address"),
        (["--connect", NODE, "--target-addr", "[::g]:9"], "is not an IPv6 address"),
        (["--connect", NODE, "--target-addr", "127.0.0.1:0"], "give the port the peer listens on"),
        (["--connect", NODE, "--relay", "127.0.0.1:0"], "give the port the peer listens on"),
        (["--connect", NODE, "--target-addr", "[::1]:7400", "--relay", "127.0.0.1:7478"], "same IP family"),
        (["--local", "--count", "5", "--duration", "1s"], "one of --count, --duration and --continuous"),
        (["--local", "--continuous", "-c", "5"], "one of --count, --duration and --continuous"),
        (["--local", "--duration", "0s"], "--duration must be a positive duration"),
        (["--connect", NODE, "--target-addr", "127.0.0.1:7400", "--relay-only"], "--relay-only needs --relay"),
    ],
)
def test_bad_ping_arguments_exit_2_with_a_message(arguments: list[str], message: str) -> None:
    result = tom_stress("ping", *arguments, "--no-live")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_listen_address_exits_2() -> None:
    result = tom_stress("responder", "--listen", "nowhere")
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr


def test_a_huge_size_is_refused_at_once_with_the_largest_that_fits_and_little_memory() -> None:
    limits = probe_size_limits(16, "ping")

    def address_space_of_200_mb() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (200 * 2**20, 200 * 2**20))

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tomstress", "ping", "--local", "--size", "50000000", "--no-live"],
        capture_output=True, text=True, timeout=60, preexec_fn=address_space_of_200_mb,
    )  # fmt: skip
    elapsed_s = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert f"use --size {limits.stream_maximum} or less" in result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    print(f"refused in {elapsed_s:.2f} s (interpreter start included)")


def test_help_states_the_real_size_range_short_options_and_the_exit_codes() -> None:
    limits = probe_size_limits(16, "ping")
    result = tom_stress("ping", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # rich wraps the help at the terminal's width
    assert f"{limits.minimum} to {limits.stream_maximum} on streams" in text
    assert f"{limits.minimum} to {limits.datagram_maximum} with --datagram" in text
    for short in ("-c", "-i", "-s", "-q", "-d"):
        assert f" {short} " in text or f" {short}," in text
    assert "Exit codes: 0 done; 1 --max-loss exceeded" in text and "4 the archive could not be written" in text


def test_the_largest_sizes_seal_within_their_caps_and_one_more_byte_does_not() -> None:
    from tomproto.node import MAX_DATAGRAM_ENVELOPE_BYTES
    from tomproto.wire.envelope import MAX_ENVELOPE_BYTES
    from tomstress.probe_sizes import DATAGRAM_MARGIN_SD, STREAM_MARGIN_SD, _likely_wire_bytes

    limits = probe_size_limits(16, "ping")
    stream = _likely_wire_bytes("0" * 16, "ping", STREAM_MARGIN_SD)
    datagram = _likely_wire_bytes("0" * 16, "ping", DATAGRAM_MARGIN_SD)
    assert stream(limits.stream_maximum) <= MAX_ENVELOPE_BYTES < stream(limits.stream_maximum + 1)
    assert datagram(limits.datagram_maximum) <= MAX_DATAGRAM_ENVELOPE_BYTES < datagram(limits.datagram_maximum + 1)


def test_a_relay_that_never_answers_exits_3_and_leaves_no_empty_archive(tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        relay = f"127.0.0.1:{silent.getsockname()[1]}"
        result = tom_stress("ping", "--connect", NODE, "--relay", relay, "--output-dir", str(tmp_path / "out"), "-q")
    assert result.returncode == 3, result.stderr
    assert f"no answer from relay {relay}" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
