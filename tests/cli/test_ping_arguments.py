"""Bad ping and responder arguments: a clear message and exit code 2, before any traffic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tomproto.identity import Identity

NODE = Identity.from_seed(bytes(32)).node_id.hex


def tom_stress(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tomstress", *arguments], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--local", "--interval", "100"], "give a unit"),
        (["--local", "--timeout", "soon"], "invalid duration"),
        (["--local", "--connect", NODE, "--target-addr", "127.0.0.1:1"], "either --local"),
        (["--connect", NODE], "--connect needs"),
        (["--connect", NODE.upper(), "--target-addr", "127.0.0.1:7400"], "lowercase"),
        (["--connect", NODE, "--target-addr", "127.0.0.1"], "HOST:PORT"),
        (["--connect", NODE, "--target-addr", "127.0.0.1:70000"], "ports are 0 to 65535"),
        (["--local", "--count", "0"], "--count"),
        (["--local", "--size", "8"], "too small"),
        (["--local", "--datagram", "--size", "1500"], "use --size"),
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
