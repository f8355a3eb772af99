"""The ping's probe send (tomstress/ping.py): a send that raises is a send error that leaves
nothing behind; measuring nodes keep no backups (tomstress/probe.py MEASUREMENT_RUNTIME)."""

from __future__ import annotations

import asyncio
from typing import Any

from tomproto.errors import LocalError
from tomproto.identity import Identity
from tomproto.transport import Transport
from tomstress.engine import Outcome
from tomstress.ping import PingConfig, PingRun
from tomstress.probe import MEASUREMENT_RUNTIME


class RefusingNode:
    def send_message_nowait(self, *_: object, **__: object) -> str:
        raise LocalError("the envelope is too large")


class Archive:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def t_of(self, monotonic_s: float) -> float:
        return monotonic_s

    def write(self, kind: str, **fields: Any) -> None:
        self.rows.append((kind, fields))


def test_a_probe_whose_send_raises_a_local_error_is_a_send_error_and_forgets_its_id() -> None:
    config = PingConfig(Identity.from_seed(bytes(32)).node_id, None, 1, 1.0, 1.0, 64, Transport.stream)
    run = PingRun(config, RefusingNode(), Archive(), asyncio.Event())  # type: ignore[arg-type]
    run.tracker.scheduled(0, 0.0)
    asyncio.run(run._send(0))
    assert run._probe_ids == {}
    assert run.tracker.records[0].outcome is Outcome.send_error


def test_measuring_nodes_neither_back_up_nor_keep_replicas() -> None:
    assert not MEASUREMENT_RUNTIME.backup and not MEASUREMENT_RUNTIME.accept_replicas
