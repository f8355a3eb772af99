"""Stopping, as it happens in the field: a dropped ssh session (SIGHUP, the terminal gone), nohup,
SIGKILL of the process the user started. Real processes over loopback; every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.processes import TOM_STRESS, finish, start_responder
from tomproto import lifeline
from tomproto.sealing import RejectReason
from tomstress.archive import read_archive, validate_archive
from tomstress.benchmarks.children import read_json_line
from tomstress.responder import COUNTERS

BOUND_S = 20.0  # the longest any wait below may take
GONE_WITHIN_S = 2.0  # what the user was promised: nothing of ours is left 2 s after a SIGKILL


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = BOUND_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def probes_in(output_dir: Path) -> int:
    """Probe events written so far to the (one) archive in `output_dir`."""
    archives = list(output_dir.glob("*.jsonl"))
    if not archives:
        return 0
    return sum(1 for event in read_archive(archives[0]) if event["ev"] == "probe")


def start_ping(*arguments: str, output_dir: Path, **popen: Any) -> subprocess.Popen[str]:
    command = [*TOM_STRESS, "ping", *arguments, "--json", "--no-live", "--output-dir", str(output_dir)]
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(command, text=True, **popen)


@pytest.fixture
def reaper() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started: killed at the end if a failed assertion left them running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=BOUND_S)


def ignore_sighup() -> None:  # what nohup does before it execs the command
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


# -- /proc: the processes of a tree, and whether they still run ----------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` ({pid: start time}), from /proc/<pid>/task/*/children."""
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier and len(found) < 100:
        parent = frontier.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = [int(text) for text in children.read_text().split()]
            except OSError:
                continue
            for child in pids:
                stat = _stat(child)
                if stat is not None and child not in found:
                    found[child] = stat[19]
                    frontier.append(child)
    return found


def running(pid: int, start_ticks: str) -> bool:
    """Still running: not gone, not a zombie, and not another process that took the pid."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[19] == start_ticks


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# -- ping ---------------------------------------------------------------------------------------


def test_sighup_stops_a_run_with_exit_129_and_a_complete_archive(tmp_path: Path, reaper: list) -> None:
    # A dropped ssh session: the hangup reaches the whole process group, our responder included.
    ping = start_ping(
        "--local", "--continuous", "--interval", "50ms", "--timeout", "1s", output_dir=tmp_path, start_new_session=True
    )
    reaper.append(ping)
    wait_until(lambda: probes_in(tmp_path) >= 5, "5 probes")
    os.killpg(ping.pid, signal.SIGHUP)
    code, summary, stderr = finish(ping, timeout_s=BOUND_S)
    assert code == 129, stderr
    assert summary is not None and summary["interrupted"] is True and summary["exit_code"] == 129
    assert "Traceback" not in stderr
    archive = Path(summary["archive"])
    validate_archive(archive)
    events = read_archive(archive)
    assert [event["ev"] for event in events][-2:] == ["interrupted", "summary"]
    assert events[-2]["signal"] == "SIGHUP"
    assert events[-1]["exit_code"] == 129
    probes = events[-1]["probes"]
    assert probes["ok"] >= 5
    assert probes["sent"] == probes["ok"] + probes["late"] + probes["lost"] + probes["send_error"]


def test_with_sighup_ignored_at_start_a_sighup_does_not_stop_the_run(tmp_path: Path, reaper: list) -> None:
    # nohup: the hangup is ignored by ping and by the responder it starts, and the run completes.
    ping = start_ping(
        "--local", "--count", "40", "--interval", "50ms", "--timeout", "2s",
        output_dir=tmp_path, start_new_session=True, preexec_fn=ignore_sighup,
    )  # fmt: skip
    reaper.append(ping)
    wait_until(lambda: probes_in(tmp_path) >= 5, "5 probes")
    os.killpg(ping.pid, signal.SIGHUP)
    code, summary, stderr = finish(ping, timeout_s=BOUND_S)
    assert code == 0, stderr
    assert summary is not None and summary["interrupted"] is False
    assert summary["probes"]["sent"] == summary["probes"]["ok"] == 40  # the responder kept answering
    events = read_archive(Path(summary["archive"]))
    assert "interrupted" not in [event["ev"] for event in events]
    assert events[-1]["ev"] == "summary"


def test_sigkill_of_ping_local_leaves_no_process_of_ours_within_2_s(tmp_path: Path) -> None:
    ping = subprocess.Popen(
        [*TOM_STRESS, "ping", "--local", "--continuous", "--interval", "50ms", "--no-live",
         "--output-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: probes_in(tmp_path) >= 3, "3 probes")  # the responder is up and answering
        ours = descendants(ping.pid)
        assert any("responder" in command_line(pid) for pid in ours), {pid: command_line(pid) for pid in ours}
        ping.send_signal(signal.SIGKILL)
        ping.wait(timeout=BOUND_S)
        killed_at = time.monotonic()
        left = {pid: command_line(pid) for pid, start in ours.items() if running(pid, start)}
        while left and time.monotonic() - killed_at < GONE_WITHIN_S:
            time.sleep(0.05)
            left = {pid: command_line(pid) for pid, start in ours.items() if running(pid, start)}
        assert not left, f"still running {GONE_WITHIN_S} s after SIGKILL: {left}"
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(timeout=BOUND_S)
        for pid, start in descendants(ping.pid).items():
            if running(pid, start):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_a_reader_gone_before_the_summary_costs_neither_the_archive_nor_the_exit_code(
    tmp_path: Path, as_json: bool, reaper: list
) -> None:
    # `tom-stress ping ... | head -0`: the summary meets EPIPE.
    command = [
        *TOM_STRESS, "ping", "--local", "--count", "5", "--interval", "50ms", "--no-live", "--output-dir", str(tmp_path)
    ]
    ping = subprocess.Popen(
        command + (["--json"] if as_json else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    reaper.append(ping)
    assert ping.stdout is not None and ping.stderr is not None
    ping.stdout.close()
    stderr = ping.stderr.read()
    assert ping.wait(timeout=BOUND_S) == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    (archive,) = tmp_path.glob("*.jsonl")
    validate_archive(archive)
    events = read_archive(archive)
    assert events[-1]["ev"] == "summary" and events[-1]["probes"]["ok"] == 5


def test_a_terminal_that_hangs_up_mid_run_does_not_stop_the_run(tmp_path: Path, reaper: list) -> None:
    # The live view and the summary go to a terminal that disappears (writes fail with EIO).
    controller, terminal = pty.openpty()
    ping = subprocess.Popen(
        [*TOM_STRESS, "ping", "--local", "--count", "30", "--interval", "100ms", "--output-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
    )  # fmt: skip
    reaper.append(ping)
    os.close(terminal)
    try:
        wait_until(lambda: probes_in(tmp_path) >= 3, "3 probes")
        os.read(controller, 65536)  # the live view was being drawn
    finally:
        os.close(controller)  # the terminal goes away: every later write to it fails with EIO
    assert ping.wait(timeout=BOUND_S) == 0
    (archive,) = tmp_path.glob("*.jsonl")
    validate_archive(archive)
    events = read_archive(archive)
    assert events[-1]["ev"] == "summary" and events[-1]["probes"]["sent"] == 30 == events[-1]["probes"]["ok"]


# -- responder and relay ------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_responder_prints_its_final_counters_when_stopped(tmp_path: Path, signum: signal.Signals) -> None:
    responder = start_responder()  # --quiet: the counters still come, as a JSON line on stdout
    try:
        ping = start_ping(
            "--connect", responder.node_id, "--target-addr", responder.address, "--count", "5", "--interval", "20ms",
            output_dir=tmp_path,
        )  # fmt: skip
        code, _, stderr = finish(ping, timeout_s=BOUND_S)
        assert code == 0, stderr
        responder.process.send_signal(signum)
        assert responder.process.stdout is not None
        stopped = read_json_line(responder.process, "stopped", BOUND_S)
        assert responder.process.wait(timeout=BOUND_S) == 0
    finally:
        responder.kill()
    assert stopped["stopped_by"] == signum.name
    assert stopped["counts"]["probes_answered"] == 5
    assert set(COUNTERS) <= set(stopped["counts"])
    assert set(stopped["rejected"]) == {reason.value for reason in RejectReason}
    assert stopped["transport"]["frames_received"] >= 5


def test_a_responder_started_under_nohup_ignores_sighup() -> None:
    process = subprocess.Popen(
        [*TOM_STRESS, "responder", "--listen", "127.0.0.1:0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_sighup,
    )
    try:
        assert process.stdout is not None
        read_json_line(process, "listening", BOUND_S)
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        stopped = read_json_line(process, "stopped", BOUND_S)
        assert stopped["stopped_by"] == "SIGTERM"  # the SIGHUP a second earlier did nothing
    finally:
        process.kill()
        process.wait(timeout=BOUND_S)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_relay_prints_its_final_stats_when_stopped(signum: signal.Signals) -> None:
    relay = subprocess.Popen(
        [*TOM_STRESS, "relay", "--listen", "127.0.0.1:0", "--stats-interval", "1h"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    responder = None
    try:
        assert relay.stdout is not None
        listening = read_json_line(relay, "listening", BOUND_S)
        relay_address = listening["addresses"][0]
        responder = subprocess.Popen(
            [*TOM_STRESS, "responder", "--listen", "127.0.0.1:0", "--quiet", "--relay", relay_address],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert responder.stdout is not None
        ready = read_json_line(responder, "listening", BOUND_S)
        assert ready["observed_address"] is not None  # registered with the relay
        relay.send_signal(signum)
        stopped = read_json_line(relay, "stopped", BOUND_S)
        assert relay.wait(timeout=BOUND_S) == 0
        _, stderr = relay.communicate(timeout=BOUND_S)
    finally:
        for process in (relay, responder):
            if process is not None:
                process.kill()
                process.wait(timeout=BOUND_S)
    assert stopped["stopped_by"] == signum.name
    assert ready["node_id"] in stopped["nodes"]  # the registered node is in the final counters
    assert {"nodes", "pairs", "events", "uptime_s"} <= set(stopped)
    assert f"stopped by {signum.name}" in stderr


# -- the static binary's bootloader, imitated ----------------------------------------------------


@pytest.mark.parametrize(
    ("to_group", "signum", "stopped_by"),
    [(False, signal.SIGKILL, "outermost_gone"), (True, signal.SIGHUP, "SIGHUP")],
    ids=["SIGKILL of the outermost", "hangup of the group"],
)
def test_in_the_static_binary_the_death_of_the_outermost_process_stops_the_responder(
    to_group: bool, signum: signal.Signals, stopped_by: str
) -> None:
    # In the binary, staticx's bootloader runs PyInstaller's parent, which runs us (frozen): we
    # watch our grandparent. Not frozen, with STATICX_PROG_PATH set, we watch our parent: here a
    # shell standing for the bootloader (it waits for the command, and a SIGHUP kills it, as it
    # kills the bootloader). A hangup of the whole group must be recorded as the hangup it is.
    responder_command = " ".join([*TOM_STRESS, "responder", "--listen", "127.0.0.1:0", "--quiet"])
    bootloader = subprocess.Popen(
        ["/bin/sh", "-c", f"{responder_command}; exit 0"], start_new_session=True,
        stdout=subprocess.PIPE, text=True, env={**os.environ, "STATICX_PROG_PATH": "/nonexistent/tom-stress"},
    )  # fmt: skip
    ours: dict[int, str] = {}
    try:
        assert bootloader.stdout is not None
        read_json_line(bootloader, "listening", BOUND_S)
        ours = descendants(bootloader.pid)
        if to_group:
            os.killpg(bootloader.pid, signum)
        else:
            bootloader.send_signal(signum)
        bootloader.wait(timeout=BOUND_S)
        stopped = read_json_line(bootloader, "stopped", GONE_WITHIN_S)
        assert stopped["stopped_by"] == stopped_by
        wait_until(
            lambda: not any(running(pid, start) for pid, start in ours.items()), "the responder to exit", GONE_WITHIN_S
        )
    finally:
        for pid, start in ours.items():
            if running(pid, start):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling (kernels before 5.3)"])
def test_watch_process_notices_a_death_by_sigkill(monkeypatch: pytest.MonkeyPatch, pidfd: bool) -> None:
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gone = asyncio.Event()
        # Our child, not asyncio's (whose watcher would reap it): it stays a zombie until reaped.
        watched = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220 - returns at once
        try:
            lifeline.watch_process(loop, watched.pid, gone.set)
            await asyncio.sleep(2 * lifeline.POLL_INTERVAL_S)  # a living process is not taken for dead
            assert not gone.is_set()
            watched.kill()
            await asyncio.wait_for(gone.wait(), GONE_WITHIN_S)  # (the acceptance bound: 2 s)
        finally:
            watched.kill()
            watched.wait(timeout=BOUND_S)

    asyncio.run(scenario())


def test_watch_eof_fires_when_the_writer_closes() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()
        reader, writer = os.pipe()
        try:
            lifeline.watch_eof(loop, reader, ended.set)
            os.write(writer, b"data is not the end")
            await asyncio.sleep(0.2)
            assert not ended.is_set()
            os.close(writer)
            await asyncio.wait_for(ended.wait(), GONE_WITHIN_S)
        finally:
            os.close(reader)

    asyncio.run(scenario())
