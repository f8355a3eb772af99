"""`tom-stress group-node`: bad flags are named and exit 2; a run prints its ready line first, its
group facts as JSON lines, and a `stopped` line last, whether its duration ends it or SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tomproto.identity import Identity
from tomstress.benchmarks.children import read_json_line

TIMEOUT_S = 60
PEER = Identity.from_seed(bytes([7]) * 32).node_id.hex


def group_node(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tomstress", "group-node", *arguments], capture_output=True,
                          text=True, timeout=TIMEOUT_S)  # fmt: skip


@pytest.fixture
def busy_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--invite", PEER], "error: --invite needs --create"),
        (["--chatter", "200"], "give a unit, e.g. 100ms"),
        (["--chatter", "0s"], "error: --chatter must be a positive duration"),
        (["--peer", f"{PEER}=127.0.0.1:7400"], "expected NODEID@HOST:PORT"),
        (["--peer", "abc@127.0.0.1:7400"], "error: --peer 'abc@127.0.0.1:7400': not a NodeId"),
        (["--create", "g", "--invite", "nobody"], "error: --invite 'nobody': not a NodeId"),
    ],
)
def test_bad_flags_are_named_and_exit_2(arguments: list[str], message: str) -> None:
    result = group_node("--listen", "127.0.0.1:0", *arguments)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.replace("│", " ").split())  # typer draws its messages in a box
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_an_address_in_use_is_named_and_exits_2(busy_port: int) -> None:
    result = group_node("--listen", f"127.0.0.1:{busy_port}")
    assert result.returncode == 2, result.stderr
    assert f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use" in result.stderr


def test_a_run_prints_ready_first_then_its_group_facts_then_stopped() -> None:
    result = group_node("--listen", "127.0.0.1:0", "--create", "solo", "--chatter", "100ms", "--duration", "1s")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    ready, *facts, stopped = lines
    assert ready["event"] == "ready" and ready["address"] == f"127.0.0.1:{ready['port']}" and ready["port"] > 0
    assert len(ready["node_id"]) == 64
    assert {line["event"] for line in facts} == {"group_fact"}
    kinds = [line["fact"] for line in facts]
    assert kinds[:2] == ["GroupCreatedHere", "GroupJoined"] and "GroupMessageSent" in kinds
    joined = facts[1]
    assert joined["fields"]["hub"] == ready["node_id"] and joined["fields"]["name"] == "solo"
    assert all(isinstance(line["mono_ns"], int) and isinstance(line["wall_ns"], int) for line in facts)
    assert stopped["event"] == "stopped" and stopped["stopped_by"] == "duration"
    assert stopped["sent"] == kinds.count("GroupMessageSent") >= 5
    assert stopped["groups"] == [joined["fields"]["group_id"]]


def test_sigterm_stops_it_with_the_stopped_line_and_exit_0() -> None:
    process = subprocess.Popen([sys.executable, "-m", "tomstress", "group-node", "--listen", "127.0.0.1:0", "--host",
                                "--join"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ready = read_json_line(process, "ready", TIMEOUT_S)
        assert ready["host_groups"] is True and ready["auto_join"] is True
        process.send_signal(signal.SIGTERM)
        stopped = read_json_line(process, "stopped", TIMEOUT_S)
        assert stopped["stopped_by"] == "SIGTERM" and stopped["sent"] == 0
        assert process.wait(timeout=TIMEOUT_S) == 0
    finally:
        process.kill()
        process.communicate(timeout=TIMEOUT_S)
