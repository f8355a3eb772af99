"""`tom-stress lab`: field networks on this machine (root; iproute2, iptables, conntrack)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import typer

from tomproto.durations import parse_duration
from tomstress.cli.common import EXIT_USAGE, fail
from tomstress.lab.netns import TOPOLOGIES, LabError, Topology, teardown
from tomstress.lab.session import STATE_DIR, Impairments, schedule_outages, start, stop

__all__ = ["register"]

lab_app = typer.Typer(help="Field networks in network namespaces: NATs, delay, loss, outages.", no_args_is_help=True)


def _percent(text: str) -> float:
    value = text.strip().removesuffix("%")
    try:
        percent = float(value)
    except ValueError:
        raise typer.BadParameter(f"invalid loss {text!r}: give a percentage, e.g. 2%") from None
    if not 0 <= percent < 100:
        raise typer.BadParameter(f"invalid loss {text!r}: between 0% and 100%")
    return percent / 100


def _outage(text: str) -> tuple[float, float]:
    duration, separator, at = text.partition("@")
    try:
        if not separator:
            raise ValueError("missing @")
        return parse_duration(at), parse_duration(duration)
    except ValueError:
        raise typer.BadParameter(f"invalid outage {text!r}: DURATION@TIME, e.g. 5s@10s (down 5 s, 10 s in)") from None


def _impairments(
    delay: str | None, jitter: str | None, loss: str | None, rate: str | None, outage: list[str]
) -> Impairments:
    try:
        return Impairments(
            delay_s=parse_duration(delay) if delay else 0.0,
            jitter_s=parse_duration(jitter) if jitter else 0.0,
            loss=_percent(loss) if loss else 0.0,
            rate=rate,
            outages=tuple(_outage(text) for text in outage),
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _check_topology(name: str) -> None:
    if name not in TOPOLOGIES:
        fail(f"unknown topology {name!r}: choose from {', '.join(TOPOLOGIES)}")


IMPAIRMENT_HELP = {
    "delay": "Added delay in each direction of each side's public link, e.g. 10ms.",
    "jitter": "Uniform jitter around the delay (no reordering), e.g. 2ms.",
    "loss": "Random loss in each direction of each side's public link, e.g. 2%.",
    "rate": "Rate limit of each public link (tc), e.g. 10mbit.",
    "outage": "Side a's link down for DURATION at TIME after the command starts, e.g. 5s@10s (repeatable).",
}


@lab_app.command(
    "run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def lab_run(
    context: typer.Context,
    topology: str = typer.Argument(..., help=f"One of: {', '.join(TOPOLOGIES)}."),
    delay: str | None = typer.Option(None, "--delay", help=IMPAIRMENT_HELP["delay"]),
    jitter: str | None = typer.Option(None, "--jitter", help=IMPAIRMENT_HELP["jitter"]),
    loss: str | None = typer.Option(None, "--loss", help=IMPAIRMENT_HELP["loss"]),
    rate: str | None = typer.Option(None, "--rate", help=IMPAIRMENT_HELP["rate"]),
    outage: list[str] = typer.Option([], "--outage", help=IMPAIRMENT_HELP["outage"]),
) -> None:
    """Build TOPOLOGY, run `tom-stress ARGS...` behind side a against a responder behind side b,
    tear everything down (also on Ctrl-C). `ping` gets --connect and --relay filled in."""
    _check_topology(topology)
    arguments = list(context.args)
    if not arguments:
        fail("give the tom-stress command to run after --, e.g. lab run home-home -- ping --count 100")
    impairments = _impairments(delay, jitter, loss, rate, outage)
    try:
        session = start(topology, impairments)
    except (LabError, RuntimeError) as error:
        fail(f"cannot build the lab: {error}")
    code = EXIT_USAGE
    try:
        print(json.dumps({"event": "lab", **session.describe()}), file=sys.stderr, flush=True)
        command = subprocess.Popen(session.command(arguments), env=session.environment())
        outages = schedule_outages(session, time.monotonic())
        session.processes += outages
        try:
            code = command.wait()
        except KeyboardInterrupt:
            command.send_signal(signal.SIGINT)
            code = command.wait(timeout=30)
    finally:
        stop(session)
    raise typer.Exit(code)


@lab_app.command("up")
def lab_up(
    topology: str = typer.Argument(..., help=f"One of: {', '.join(TOPOLOGIES)}."),
    name: str = typer.Option("lab", "--name", help="Name of this lab (several can run at once)."),
    delay: str | None = typer.Option(None, "--delay", help=IMPAIRMENT_HELP["delay"]),
    jitter: str | None = typer.Option(None, "--jitter", help=IMPAIRMENT_HELP["jitter"]),
    loss: str | None = typer.Option(None, "--loss", help=IMPAIRMENT_HELP["loss"]),
    rate: str | None = typer.Option(None, "--rate", help=IMPAIRMENT_HELP["rate"]),
) -> None:
    """Build a lab and leave it running; print how to run commands in it. `lab down` removes it."""
    _check_topology(topology)
    state = STATE_DIR / f"{name}.json"
    if state.exists():
        fail(f"lab {name!r} is already up (tom-stress lab down --name {name})")
    try:
        session = start(topology, _impairments(delay, jitter, loss, rate, []), prefix=f"tl-{name}")
    except (LabError, RuntimeError) as error:
        fail(f"cannot build the lab: {error}")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({**session.describe(), "prefix": session.topology.prefix,
                                 "pids": [process.pid for process in session.processes]}))  # fmt: skip
    print(json.dumps({"event": "lab_up", "name": name, **session.describe()}))
    print(f"run behind side a:  {' '.join(session.command(['ping', '--count', '20']))}", file=sys.stderr)
    print(f"tear down:          tom-stress lab down --name {name}", file=sys.stderr)


@lab_app.command("down")
def lab_down(name: str = typer.Option("lab", "--name", help="The lab to remove.")) -> None:
    """Stop a lab's processes and delete its namespaces."""
    state = STATE_DIR / f"{name}.json"
    if not state.exists():
        fail(f"no lab named {name!r} is up")
    recorded = json.loads(state.read_text())
    for pid in recorded.get("pids", []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    topology = recorded["topology"]
    teardown(Topology(recorded["prefix"], topology, TOPOLOGIES[topology], recorded["namespaces"]))
    state.unlink()
    print(json.dumps({"event": "lab_down", "name": name}))


@lab_app.command("delayer", hidden=True)
def lab_delayer(
    queue: int = typer.Option(..., "--queue"),
    delay: str = typer.Option(..., "--delay"),
    jitter: str = typer.Option("0ms", "--jitter"),
    seed: int = typer.Option(1, "--seed"),
) -> None:
    """The lab's NFQUEUE delayer (started by the lab inside a NAT namespace)."""
    from tomstress.lab.delayer import run_delayer

    run_delayer(queue, parse_duration(delay), parse_duration(jitter), seed)


@lab_app.command("topologies")
def lab_topologies() -> None:
    """List the topologies and their NAT layers per side."""
    for name, layers in TOPOLOGIES.items():
        sides = ", ".join(f"{side}: {' + '.join(kinds) or 'no NAT'}" for side, kinds in layers.items())
        print(f"{name:<15} {sides}")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")

