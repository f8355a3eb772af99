"""`keygen` and `id`: create an identity file and show the NodeId it holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tomproto.errors import IdentityError
from tomproto.identity import create_identity_file, exposure_warning, load_identity
from tomstress.cli.common import fail, warn

__all__ = ["register"]

IDENTITY_OPTION_HELP = "Identity file: the 32-byte Ed25519 seed."


def keygen(
    identity_file: Path = typer.Option(..., "--identity", help=IDENTITY_OPTION_HELP),
    force: bool = typer.Option(False, "--force", help="Replace an existing identity file."),
) -> None:
    """Create a new identity file (mode 0600) and print its NodeId."""
    if identity_file.exists() and not force:
        fail(f"{identity_file} already exists; pass --force to replace it (its NodeId will change)")
    try:
        identity = create_identity_file(identity_file, overwrite=force)
    except IdentityError as error:
        fail(str(error))
    typer.echo(identity.node_id.hex)


def show_id(
    identity_file: Path = typer.Option(..., "--identity", help=IDENTITY_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print both spellings as one JSON object."),
) -> None:
    """Print the NodeId (64 hex characters) of an identity file."""
    try:
        identity = load_identity(identity_file)
    except IdentityError as error:
        fail(str(error))
    warning = exposure_warning(identity_file)
    if warning is not None:
        warn(warning)
    if as_json:
        typer.echo(json.dumps({"node_id": identity.node_id.hex, "node_id_base32": identity.node_id.base32}))
    else:
        typer.echo(identity.node_id.hex)


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("id")(show_id)
