"""``fluvial spu list|register|unregister``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from fluvial.cli.common import OutputFormat, OutputOption, fail, run_client, usage_error

__all__ = ["app", "spu_record"]

app = typer.Typer(no_args_is_help=True, help="List, register and unregister SPUs.")


def spu_record(s: Any) -> dict[str, Any]:
    """An ``SpuInfo`` as plain data (the JSON/YAML output)."""
    return {"id": s.id, "name": s.name, "status": s.resolution, "type": s.type, "rack": s.rack,
            "public_address": s.public_address, "private_address": s.private_address}


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the SPUs the SC knows, with their status and addresses.

    Example: fluvial spu list
    """
    from fluvial.cli.output import print_rows

    async def body(fl: Any) -> list:
        return await fl.admin.list_spus()

    spus = run_client(ctx, body)
    print_rows([spu_record(s) for s in spus],
               ["id", "name", "status", "type", "rack", "public_address", "private_address"],
               output.value, headers=["ID", "NAME", "STATUS", "TYPE", "RACK", "PUBLIC", "PRIVATE"],
               empty="no SPUs")


@app.command()
def register(
    ctx: typer.Context,
    spu_id: Annotated[int, typer.Option("--id", min=0, help="The SPU's id (as it will connect with).")],
    public_server: Annotated[str, typer.Option("-p", "--public-server", metavar="HOST:PORT",
                                               help="Where clients reach it.")],
    private_server: Annotated[str, typer.Option("-v", "--private-server", metavar="HOST:PORT",
                                                help="Where the SC and other SPUs reach it.")],
    name: Annotated[Optional[str], typer.Option("-n", "--name",
                                                help="Its name (default custom-spu-<id>).")] = None,
    rack: Annotated[Optional[str], typer.Option("--rack", help="Its rack, for replica placement.")] = None,
) -> None:
    """Register a custom SPU, so that it may join the cluster.

    Example: fluvial spu register --id 5010 -p 10.0.0.5:9010 -v 10.0.0.5:9011
    """
    from fluvial.client.profile import split_endpoint
    from fluvial.errors import ConfigError

    for flag, value in (("--public-server", public_server), ("--private-server", private_server)):
        try:
            split_endpoint(value)
        except ConfigError as e:
            usage_error(f"{flag}: {e}")

    async def body(fl: Any) -> None:
        await fl.admin.register_spu(spu_id, public_server, private_server, name=name, rack=rack)

    run_client(ctx, body)
    typer.echo(f"SPU {spu_id} registered as '{name or f'custom-spu-{spu_id}'}'")


@app.command()
def unregister(
    ctx: typer.Context,
    spu_id: Annotated[Optional[int], typer.Option("--id", min=0, help="The SPU's id.")] = None,
    name: Annotated[Optional[str], typer.Option("-n", "--name", help="The SPU's name.")] = None,
) -> None:
    """Unregister a custom SPU (by --id or --name).

    Example: fluvial spu unregister --id 5010
    """
    if (spu_id is None) == (name is None):
        usage_error("give --id or --name")
    target: int | str = spu_id if spu_id is not None else name  # type: ignore[assignment]
    shown = f"SPU {target}" if spu_id is not None else f"SPU '{target}'"

    async def body(fl: Any) -> None:
        from fluvial.errors import SpuNotFoundError

        try:
            await fl.admin.unregister_spu(target)
        except SpuNotFoundError:
            fail(f"{shown} is not a registered custom SPU", "list the SPUs with `fluvial spu list`")

    run_client(ctx, body)
    typer.echo(f"{shown} unregistered")
