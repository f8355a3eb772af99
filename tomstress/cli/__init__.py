"""The tom-stress command line: one module per command group, thin commands over library calls.

Exit codes (spec/measurement.md §4): 0 success, 1 a phase failed its criteria, 2 usage or
configuration error, 3 the peer was never reached, 4 the archive could not be written, 129/130/143
interrupted (SIGHUP/SIGINT/SIGTERM).
"""

from __future__ import annotations

import typer

from tomproto.buildinfo import version_line
from tomproto.errors import LocalError
from tomproto.relay.cli import EXIT_CODES_HELP as RELAY_EXIT_CODES_HELP
from tomproto.relay.cli import relay as relay_command
from tomstress.cli import group_node, identity, lab, natreport, ping, responder
from tomstress.cli.common import fail

__all__ = ["app", "main"]

app = typer.Typer(
    name="tom-stress",
    help="Field measurement campaigns for the ToM peer-to-peer protocol.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold keys
)
identity.register(app)
responder.register(app)
ping.register(app)
natreport.register(app)
lab.register(app)
group_node.register(app)
app.command(
    "relay",
    help="Run tom-relay, the relay and rendezvous server (same as the tom-relay command).",
    epilog=RELAY_EXIT_CODES_HELP,
)(relay_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line("tom-stress"))
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Field measurement campaigns for the ToM peer-to-peer protocol."""


def main() -> None:
    try:
        app()
    except LocalError as error:  # configuration errors the commands did not handle themselves
        fail(str(error))
