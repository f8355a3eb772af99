"""One node that hosts and joins groups, for the campaign's group and failover phases (and tests):
what `tom-stress group-node` runs.

It starts a Node (hosting groups others create on it with `host_groups`, joining every
invitation with `auto_join`), knows where to dial its peers, optionally creates a group hosted
here and invites some nodes (they should be running: an invitation that cannot be delivered is
not kept), and sends a message to every group it is a member of every `chatter_s` (open loop:
message k at start + k x interval, whatever happened before). Everything it has to say goes to
`emit` as one JSON-ready dict: `ready` once listening (first), every group fact and send as a
`group_fact` record (tomstress/groups.py), a `send_error` when a send is refused, and `stopped`
with the counts at the end. It runs until `stop` is set or `duration_s` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tomproto.addresses import format_host_port
from tomproto.core.runtime import RuntimeSettings
from tomproto.errors import Backpressure, ConnectionLost, LocalError
from tomproto.identity import Identity, NodeId
from tomproto.node import Node
from tomproto.transport.interfaces import local_ipv4_addresses
from tomstress.groups import SENT, FactRecord, GroupFactRecorder, record_to_json

__all__ = ["GroupNodeConfig", "Stop", "run_group_node", "READY", "FACT", "SEND_ERROR", "STOPPED"]

READY = "ready"
FACT = "group_fact"
SEND_ERROR = "send_error"
STOPPED = "stopped"

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class GroupNodeConfig:
    identity: Identity
    listen: tuple[str, int]
    peers: dict[NodeId, tuple[str, int]] = field(default_factory=dict)  # where to dial them
    host_groups: bool = False
    auto_join: bool = False
    create: str | None = None  # a group to create, hosted here
    invite: tuple[NodeId, ...] = ()  # ... and whom to invite to it
    username: str | None = None  # our name in the groups we create (default: our NodeId's first 8 hex)
    chatter_s: float | None = None  # send to every group we are in this often
    duration_s: float | None = None  # stop after this long (default: when `stop` is set)

    @property
    def name(self) -> str:
        return self.username or self.identity.node_id.hex[:8]


class Stop:
    """Ask a run to stop, saying why (the first reason given is kept)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason: str | None = None

    def __call__(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()


def _addresses(host: str, port: int) -> list[str]:
    """What peers may dial: the bound address, or this host's interface addresses for a wildcard."""
    if host not in ("0.0.0.0", "::"):
        return [format_host_port((host, port))]
    return [format_host_port((address, port)) for address in local_ipv4_addresses()] or [format_host_port((host, port))]


async def run_group_node(config: GroupNodeConfig, emit: Emit, stop: Stop) -> dict[str, Any]:
    """Run until `stop` is called or `duration_s` passes; the `stopped` line (emitted too).
    OSError when the address cannot be bound."""
    started_s = time.monotonic()
    settings = RuntimeSettings(host_groups=config.host_groups, auto_join_groups=config.auto_join, backup=False)
    host, port = config.listen
    node = await Node.start(config.identity, host, port, runtime=settings)
    node.addresses.update(config.peers)

    def emit_record(record: FactRecord) -> None:
        emit({"event": FACT, **record_to_json(record)})

    recorder = GroupFactRecorder(node, emit_record, keep=False)
    send_errors = 0
    stopped_by = "duration"
    try:
        bound_host, bound_port = node.endpoint.local_address
        addresses = _addresses(bound_host, bound_port)
        emit({"event": READY, "node_id": node.node_id.hex, "address": addresses[0], "addresses": addresses,
              "port": bound_port, "host_groups": config.host_groups, "auto_join": config.auto_join})  # fmt: skip
        if config.create is not None:
            node.create_group(config.create, list(config.invite), username=config.name)

        async def chatter(interval_s: float) -> None:
            nonlocal send_errors
            begin = time.monotonic()
            for k in itertools.count(1):
                await asyncio.sleep(max(0.0, begin + k * interval_s - time.monotonic()))
                for group_id in node.member_groups:
                    try:
                        recorder.send(group_id, f"{config.name} #{k}")
                    except (Backpressure, LocalError) as error:
                        send_errors += 1
                        emit({"event": SEND_ERROR, "group_id": group_id, "error": f"{type(error).__name__}: {error}",
                              "mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns()})  # fmt: skip

        chattering = None if config.chatter_s is None else asyncio.ensure_future(chatter(config.chatter_s))
        try:
            async with asyncio.timeout(config.duration_s):
                await stop.event.wait()
            stopped_by = stop.reason or "stop"
        except TimeoutError:
            pass
        finally:
            if chattering is not None:
                chattering.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionLost):
                    await chattering
    finally:
        recorder.close()
        await node.close()
    final = {
        "event": STOPPED, "stopped_by": stopped_by, "uptime_s": round(time.monotonic() - started_s, 3),
        "sent": recorder.counts[SENT], "send_errors": send_errors,
        "facts": {kind: count for kind, count in sorted(recorder.counts.items()) if kind != SENT},
        "groups": node.member_groups,
    }  # fmt: skip
    emit(final)
    return final

