"""``fluvial cluster certs``: mint the TLS files and a default policy for a local cluster.

Mounted on the ``cluster`` app by ``register(cluster_app)``::

    from fluvial.cli import certs
    certs.register(app)          # in fluvial/cli/cluster.py, after ``app`` is created

The certificates come from ``fluvial.tls_certs.mint_cluster_certs`` (certs/README.md explains
every file). Next to them goes ``policy.toml`` (``fluvial.auth``): the ``--admin`` principals get
every permission, ``sc`` and the SPUs are the member identities, other ``--client`` principals
may only read metadata until the file says more.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import tomli_w
import typer

from fluvial.auth import default_policy
from fluvial.client import profile as prof
from fluvial.access import spu_member_name
from fluvial.tls_certs import DEFAULT_DOMAIN, DEFAULT_VALID_DAYS, mint_cluster_certs

__all__ = ["POLICY_FILE", "certs_command", "register", "spu_member_name", "write_default_policy"]

POLICY_FILE = "policy.toml"
DEFAULT_SPUS = 3
FIRST_SPU_ID = 5001

_POLICY_HEADER = """\
# fluvial authorization policy (see fluvial/auth.py for the rules).
# Principals are client certificate CNs. The admin role may do everything but the private
# (member) APIs; other listed clients may only list and watch metadata (default_read).
# Grant more with entries like:
#   [principals.reader]
#   permissions = [{ action = "consume", topics = "orders-*" }]
# Actions: admin (kinds = [...], names = "glob"), read, produce, consume (topics = "glob").

"""


def _describe(key: str, admins: list[str]) -> str:
    if key.startswith("ca_"):
        return "cluster CA" + (" (keep private: signs every certificate)" if key == "ca_key" else "")
    if key.startswith("server_"):
        return "SC and SPU public listeners"
    if key.startswith("sc_"):
        return "SC member identity (CN sc)"
    if key.startswith("client_"):
        cn = key[len("client_"):].rsplit("_", 1)[0]
        return f"client principal {cn}" + (" (admin)" if cn in admins else "")
    return f"SPU member identity (CN {key.rsplit('_', 1)[0]})"


def certs_command(
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Directory to write into (default $FLUVIAL_HOME/certs).")] = None,
    domain: Annotated[str, typer.Option(
        help="The TLS domain clients check: the SC is <domain>, each SPU <name>.<domain>.")]
        = DEFAULT_DOMAIN,
    spus: Annotated[int, typer.Option(
        "--spus", min=0, help="SPU member certificates to mint (custom-spu-<id>).")] = DEFAULT_SPUS,
    first_spu_id: Annotated[int, typer.Option(help="Id of the first SPU.")] = FIRST_SPU_ID,
    client: Annotated[Optional[list[str]], typer.Option(
        "--client", help="A client principal (certificate CN); repeatable. Default: admin.")] = None,
    admin: Annotated[Optional[list[str]], typer.Option(
        "--admin", help="A principal granted every permission in policy.toml; repeatable. "
                        "Minted as a client too. Default: admin.")] = None,
    host: Annotated[Optional[list[str]], typer.Option(
        "--host", help="An extra DNS name or IP address for the server certificates; repeatable.")]
        = None,
    days: Annotated[int, typer.Option(min=1, help="Validity of every certificate, in days.")]
        = DEFAULT_VALID_DAYS,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite certificates already in the directory.")] = False,
) -> None:
    """Mint a CA, server, member and client certificates and a default policy.toml.

    Example: fluvial cluster certs --spus 3 --client admin --client reader
    """
    directory = out if out is not None else prof.fluvial_home() / "certs"
    admins = list(dict.fromkeys(admin or ["admin"]))
    clients = list(dict.fromkeys([*(client or ["admin"]), *admins]))
    spu_names = [spu_member_name(first_spu_id + i) for i in range(spus)]
    if directory.exists() and not force and any((directory / n).exists()
                                                for n in ("ca.crt", "ca.key", POLICY_FILE)):
        raise typer.Exit(_fail(f"{directory} already holds certificates; pass --force to replace "
                               f"them (clients and servers using the old CA will stop working)"))
    try:
        paths = mint_cluster_certs(directory, domain=domain, spu_names=tuple(spu_names),
                                   client_cns=tuple(clients), extra_hosts=tuple(host or ()),
                                   valid_days=days)
        write_default_policy(directory / POLICY_FILE, admins=admins, members=["sc", *spu_names],
                             clients=clients)
    except (ValueError, OSError) as e:
        raise typer.Exit(_fail(str(e)))

    width = max(len(p.name) for p in paths.values())
    typer.echo(f"wrote {len(paths) + 1} files to {directory} (domain {domain}, valid {days} days):")
    for key, path in paths.items():
        typer.echo(f"  {path.name:<{width}}  {_describe(key, admins)}")
    typer.echo(f"  {POLICY_FILE:<{width}}  authorization policy: admin {', '.join(admins)}; "
               f"members sc{''.join(', ' + n for n in spu_names)}")


def write_default_policy(path: Path, *, admins: Sequence[str] = ("admin",),
                         members: Sequence[str] = ("sc",), clients: Sequence[str] = ()) -> None:
    """Write ``fluvial.auth.default_policy`` as commented TOML to ``path`` (atomically):
    ``admins`` get every permission, ``members`` the private APIs, ``clients`` read only."""
    document = default_policy(admins=admins, members=members, clients=clients)
    _write_text(path, _POLICY_HEADER + tomli_w.dumps(document))


def register(cluster_app: typer.Typer) -> None:
    """Add ``certs`` to the ``fluvial cluster`` app."""
    cluster_app.command("certs")(certs_command)


def _fail(msg: str) -> int:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    return 1


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
