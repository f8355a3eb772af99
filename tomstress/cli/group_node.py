"""`tom-stress group-node`: one node that hosts and joins groups (tomstress/group_node.py), every
group fact it sees written as a JSON line on stdout, so that a parent (the campaign, a test) can
drive it and observe it: the campaign's failover helper, the hub it kills."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from tomproto.durations import duration_option
from tomproto.errors import IdentityError
from tomproto.identity import NodeId, load_or_create_identity
from tomproto.lifeline import watch_outermost
from tomproto.stopsignals import install_stop_handlers
from tomproto.terminal import guarded_stdout
from tomstress.addresses import format_host_port, host_port_option, peer_address
from tomstress.cli.common import EXIT_OUTPUT_FAILED, fail, warn
from tomstress.group_node import GroupNodeConfig, Stop, run_group_node

__all__ = ["register", "parse_peer"]

DEFAULT_LISTEN = "0.0.0.0:0"

EXIT_CODES_HELP = (
    "\b\nExit codes: 0 stopped (--duration, SIGINT, SIGTERM or SIGHUP; a `stopped` line with the counts is "
    "printed); 2 usage or configuration error (an address in use is named); 3 a --peer host name does not "
    "resolve; 4 stdout could not be written."
)

OUTPUT_HELP = (
    "\b\nOutput, one JSON object a line on stdout, flushed: first {\"event\": \"ready\", \"node_id\", \"address\", "
    "\"addresses\", \"port\"} once listening; then {\"event\": \"group_fact\", \"fact\": TYPE, \"fields\": {...}, "
    "\"mono_ns\", \"wall_ns\"} for every group fact (GroupJoined, GroupMessageReceived, HubPromoted...) and every "
    "message sent (fact GroupMessageSent); {\"event\": \"send_error\"} for a send refused; {\"event\": "
    "\"stopped\"} last."
)


def parse_peer(text: str) -> tuple[NodeId, tuple[str, int]]:
    """`NODEID@HOST:PORT`; exit 2 with the accepted form when it is not one (3: a host that does not resolve)."""
    node_text, separator, address_text = text.partition("@")
    if not separator:
        fail(f"--peer {text!r}: expected NODEID@HOST:PORT, e.g. {'0' * 8}...@192.0.2.7:7400")
    try:
        node_id = NodeId.parse(node_text)
    except IdentityError as error:
        fail(f"--peer {text!r}: {error}")
    return node_id, peer_address("--peer", address_text)


def group_node(
    listen: str = typer.Option(DEFAULT_LISTEN, "--listen", metavar="HOST:PORT",
                               help="UDP address to listen on (port 0: any free port, named on the ready line)."),
    identity_file: Path | None = typer.Option(
        None, "--identity", help="Identity file (created if missing); an ephemeral identity without it."
    ),
    peers: list[str] = typer.Option(
        [], "--peer", metavar="NODEID@HOST:PORT", help="Where to dial a peer (repeatable)."
    ),
    host: bool = typer.Option(False, "--host", help="Host the groups other nodes create here."),
    join: bool = typer.Option(False, "--join", help="Join every group this node is invited to."),
    create: str | None = typer.Option(None, "--create", metavar="NAME",
                                      help="Create a group hosted here (the invited nodes should be running)."),
    invite: list[str] = typer.Option([], "--invite", metavar="NODEID", help="Invite this node to --create's group "
                                     "(repeatable)."),
    username: str | None = typer.Option(None, "--username", metavar="NAME",
                                        help="Our name in the group we create (default: our NodeId's first 8 hex)."),
    chatter: float | None = typer.Option(
        None, "--chatter", parser=duration_option, metavar="DURATION",
        help="Send a message to every group this node is a member of this often, e.g. 200ms (the hub takes 5 "
        "messages a second from each sender, bursts of 10).",
    ),
    duration: float | None = typer.Option(
        None, "--duration", parser=duration_option, metavar="DURATION",
        help="Stop after this long, e.g. 30s (default: run until SIGINT or SIGTERM).",
    ),
) -> None:
    """Run a node that hosts and joins groups, printing every group fact as a JSON line."""
    listen_address = host_port_option(listen)
    if invite and create is None:
        fail("--invite needs --create: it names who is invited to the group created here")
    if chatter is not None and chatter <= 0:
        fail("--chatter must be a positive duration, e.g. 200ms")
    if duration is not None and duration <= 0:
        fail("--duration must be a positive duration, e.g. 30s")
    if create is not None and not create.strip():
        fail("--create needs a group name")
    invited: list[NodeId] = []
    for text in invite:
        try:
            invited.append(NodeId.parse(text))
        except IdentityError as error:
            fail(f"--invite {text!r}: {error}")
    known = dict(parse_peer(text) for text in peers)
    try:
        identity = load_or_create_identity(identity_file, warn=warn)
    except IdentityError as error:
        fail(str(error))
    config = GroupNodeConfig(identity, listen_address, known, host, join, create, tuple(invited), username,
                             chatter, duration)  # fmt: skip
    asyncio.run(_run(config))


async def _run(config: GroupNodeConfig) -> None:
    out = guarded_stdout()  # a terminal that goes away must not stop the node
    failed: list[OSError] = []
    stop = Stop()

    def emit(line: dict[str, Any]) -> None:
        if failed:
            return
        try:
            print(json.dumps(line), file=out, flush=True)
        except OSError as error:  # a full disk behind a redirection: stop, and say so
            failed.append(error)
            stop("output_failed")

    loop = asyncio.get_running_loop()
    install_stop_handlers(loop, lambda signum: stop(signum.name))
    watch_outermost(loop, lambda: stop("outermost_gone"))
    try:
        await run_group_node(config, emit, stop)
    except OSError as error:
        fail(f"cannot listen on {format_host_port(config.listen)}: {error.strerror or error}")
    if failed:
        fail(f"cannot write to stdout: {failed[0].strerror or failed[0]}", EXIT_OUTPUT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("group-node", epilog=f"{OUTPUT_HELP}\n\n{EXIT_CODES_HELP}")(group_node)
