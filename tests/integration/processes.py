"""Real processes for integration tests: responders, ping runs, a plain UDP echo."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tomstress.benchmarks.children import read_json_line

TOM_STRESS = [sys.executable, "-m", "tomstress"]
START_TIMEOUT_S = 20


@dataclass
class ResponderProcess:
    process: subprocess.Popen[str]
    node_id: str
    port: int
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def start_responder(
    port: int = 0, identity: Path | None = None, *extra: str, host: str = "127.0.0.1"
) -> ResponderProcess:
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    command = [*TOM_STRESS, "responder", "--listen", listen, "--quiet", *extra]
    if identity is not None:
        command += ["--identity", str(identity)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    ready = _ready(process, "listening")
    return ResponderProcess(process, ready["node_id"], ready["port"], host)


def start_relay() -> tuple[subprocess.Popen[str], int]:
    """tom-relay on 127.0.0.1 (a free port): the process and its port."""
    process = subprocess.Popen([*TOM_STRESS, "relay", "--listen", "127.0.0.1:0", "--stats-interval", "1h"],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    address = _ready(process, "listening")["addresses"][0]
    return process, int(address.rsplit(":", 1)[1])


def _ready(process: subprocess.Popen[str], event: str) -> dict[str, Any]:
    """The server's `event` line, within START_TIMEOUT_S (a select() deadline: a silent child
    cannot hang the test); the child is killed when it does not come."""
    try:
        return read_json_line(process, event, START_TIMEOUT_S)
    except (TimeoutError, ValueError):
        process.kill()
        process.wait(timeout=10)
        raise


def start_ping(*arguments: str, output_dir: Path) -> subprocess.Popen[str]:
    command = [*TOM_STRESS, "ping", *arguments, "--json", "--no-live", "--output-dir", str(output_dir)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout_s: float = 120) -> tuple[int, dict[str, Any] | None, str]:
    stdout, stderr = process.communicate(timeout=timeout_s)
    summary = json.loads(stdout) if stdout.strip() else None
    return process.returncode, summary, stderr


UDP_ECHO_SERVER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
sock.settimeout(60)
try:
    while True:
        data, address = sock.recvfrom(65536)
        sock.sendto(data, address)
except socket.timeout:
    pass
"""


def udp_echo_min_rtt_ms(payload_bytes: int, count: int = 50) -> float:
    """The minimum round trip of a plain UDP echo through another process, in ms."""
    server = subprocess.Popen([sys.executable, "-c", UDP_ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(2)
        payload = os.urandom(payload_bytes)
        rtts = []
        for _ in range(count):
            started = time.perf_counter()
            client.sendto(payload, ("127.0.0.1", port))
            client.recvfrom(65536)
            rtts.append((time.perf_counter() - started) * 1000)
        client.close()
        return min(rtts)
    finally:
        server.kill()
        server.wait(timeout=10)


@dataclass
class NodeProcessHandle:
    """A `tomstress.benchmarks.node_process` child: one JSON command a line in, one answer out."""

    process: subprocess.Popen[str]
    node_id: str
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, timeout_s: float = 60, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = read_json_line(self.process, str(command["op"]), timeout_s)
        return answer

    def stop(self, timeout_s: float = 10) -> int:
        """Close its stdin (a clean stop), SIGKILL if it lingers; its exit code."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


def start_node(identity: Path, *extra: str, port: int = 0, max_seconds: float = 300) -> NodeProcessHandle:
    """A node process with the identity in `identity` (created when missing), on 127.0.0.1."""
    command = [sys.executable, "-m", "tomstress.benchmarks.node_process", "--identity", str(identity),
               "--listen", f"127.0.0.1:{port}", "--max-seconds", str(max_seconds), *extra]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = _ready(process, "ready")
    return NodeProcessHandle(process, ready["node_id"], ready["port"])
