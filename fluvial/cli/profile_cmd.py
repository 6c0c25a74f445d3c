"""``fluvial profile current|list|switch|add|rename|delete|export``.

The profile file is Fluvio's (``fluvial.client.profile``): ``$FLUVIAL_CONFIG``, else
``$FLUVIAL_HOME/config``, else ``~/.fluvial/config``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fluvial.cli.common import (
    DomainFlag, OutputFormat, OutputOption, TlsFlag, fail, handle_errors, tls_policy_from_flags,
)
from fluvial.client import profile as prof

__all__ = ["app", "profile_record"]

app = typer.Typer(no_args_is_help=True, help="Manage the profiles that say which cluster to use.")

_NO_PROFILE_HINT = ("`fluvial cluster start` adds a 'local' profile; `fluvial profile add NAME "
                    "HOST:PORT` adds one for a running cluster")


def profile_record(entry: Any) -> dict[str, Any]:
    """A ``ProfileEntry`` as plain data (the JSON/YAML output)."""
    tls = entry.tls
    return {"name": entry.name, "current": entry.current, "cluster": entry.cluster,
            "endpoint": entry.endpoint, "tls": None if tls is None else tls.kind,
            "domain": getattr(tls, "domain", None)}


@app.command()
def current() -> None:
    """Print the name of the current profile.

    Example: fluvial profile current
    """
    with handle_errors():
        name = prof.current_profile()
    if name is None:
        fail("no profile is selected", _NO_PROFILE_HINT)
    typer.echo(name)


@app.command("list")
def list_(output: OutputOption = OutputFormat.table) -> None:
    """List the profiles; the current one is marked with *.

    Example: fluvial profile list -O json
    """
    from fluvial.cli.output import print_rows

    with handle_errors():
        entries = prof.list_profiles()
    rows = [profile_record(e) for e in entries]
    if output is OutputFormat.table:
        for row, entry in zip(rows, entries):
            row["current"] = "*" if entry.current else ""
            row["tls"] = entry.tls.describe() if entry.tls is not None else "(no such cluster)"
    print_rows(rows, ["current", "name", "cluster", "endpoint", "tls"], output.value,
               headers=["", "PROFILE", "CLUSTER", "ENDPOINT", "TLS"],
               empty=f"no profiles; {_NO_PROFILE_HINT}")


@app.command()
def switch(name: Annotated[str, typer.Argument(help="The profile to make current.")]) -> None:
    """Make another profile the current one.

    Example: fluvial profile switch production
    """
    with handle_errors():
        prof.switch_profile(name)
    typer.echo(f"profile '{name}' is now current")


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser().resolve()


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="The profile's name (its cluster gets the same).")],
    endpoint: Annotated[str, typer.Argument(metavar="HOST:PORT", help="The SC's public address.")],
    tls: TlsFlag = None,
    domain: DomainFlag = None,
    ca_cert: Annotated[Path | None, typer.Option("--ca-cert", exists=True, dir_okay=False,
                                                 help="TLS: the CA certificate (PEM).")] = None,
    client_cert: Annotated[Path | None, typer.Option("--client-cert", exists=True, dir_okay=False,
                                                     help="TLS: the client certificate (PEM).")] = None,
    client_key: Annotated[Path | None, typer.Option("--client-key", exists=True, dir_okay=False,
                                                    help="TLS: the client's private key (PEM).")] = None,
    switch_to: Annotated[bool, typer.Option("--switch/--no-switch",
                                            help="Make it the current profile.")] = True,
) -> None:
    """Add a profile for a cluster (or replace the one of that name).

    Certificate paths are stored as absolute paths.

    Example: fluvial profile add prod 10.0.0.1:9003 --domain fluvial.example --ca-cert ca.crt --client-cert me.crt --client-key me.key
    """
    policy = tls_policy_from_flags(tls, domain, _absolute(ca_cert), _absolute(client_cert),
                                   _absolute(client_key))
    with handle_errors():
        prof.add_profile(name, endpoint, policy, set_current=switch_to)
    typer.echo(f"profile '{name}' added ({endpoint}){'; it is now current' if switch_to else ''}")


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="The profile's name.")],
    new: Annotated[str, typer.Argument(help="Its new name.")],
) -> None:
    """Rename a profile.

    Example: fluvial profile rename local dev
    """
    with handle_errors():
        prof.rename_profile(old, new)
    typer.echo(f"profile '{old}' renamed to '{new}'")


@app.command()
def delete(name: Annotated[str, typer.Argument(help="The profile to delete.")]) -> None:
    """Delete a profile (and its cluster entry, when no other profile uses it).

    Example: fluvial profile delete old-cluster
    """
    from fluvial.cli.output import print_warning

    with handle_errors():
        deleted = prof.delete_profile(name)
    typer.echo(f"profile '{name}' deleted")
    if deleted.was_current:
        print_warning("no profile is selected now; pick one with `fluvial profile switch NAME`")


@app.command()
def export(
    name: Annotated[str | None, typer.Argument(help="The profile (default: the current one).")] = None,
) -> None:
    """Print a profile as a standalone profile file (TOML), certificates included inline.

    The output works as $FLUVIAL_CONFIG on another machine, and as FLV_PROFILE_PATH for fluvio.

    Example: fluvial profile export local > local.toml
    """
    with handle_errors():
        text = prof.export(name)
    sys.stdout.write(text)
    sys.stdout.flush()
