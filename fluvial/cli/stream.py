"""``fluvial stream``: set, get, delete and list stream items, send custom events (iii's streams
on the log; ``docs/gateway.md``). A stream's topic is created on its first write."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from fluvial.cli.common import run_client, usage_error

app = typer.Typer(no_args_is_help=True, help="Real-time stream items (iii's streams) on the log.")

Partitions = Annotated[int, typer.Option("--partitions", min=1,
                                         help="Partitions of a stream topic created by this write.")]
Replication = Annotated[int, typer.Option("--replication", min=1,
                                          help="Replication of a stream topic created by this write.")]


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        usage_error(f"{what} is not JSON: {e}")


def _names(stream: str, group: str, id: str | None = None) -> None:
    """Exit 2 on a name that cannot be a stream, group or item name (before connecting)."""
    from fluvial.gateway.model import StreamError, check_name, topic_for_stream

    try:
        topic_for_stream(stream)
        check_name("group", group)
        if id is not None:
            check_name("id", id)
    except StreamError as e:
        usage_error(str(e))


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, separators=(",", ":")))


@app.command("set")
def set_(ctx: typer.Context, stream: str, group: str, id: str,
         data: Annotated[str, typer.Argument(metavar="JSON", help="The item, as JSON.")],
         partitions: Partitions = 1, replication: Replication = 1) -> None:
    """Create or update an item; prints it once it is durable on the log.

    Example: fluvial stream set chat room-1 m1 '{"text": "hi"}'
    """
    _names(stream, group, id)
    value = _json(data, "the item")

    async def body(fl: Any) -> Any:
        return await fl.streams(partitions=partitions, replication=replication).set(stream, group, id, value)

    _print(run_client(ctx, body))


@app.command()
def get(ctx: typer.Context, stream: str, group: str, id: str) -> None:
    """Print an item (exit 1 when there is none).

    Example: fluvial stream get chat room-1 m1
    """
    _names(stream, group, id)
    async def body(fl: Any) -> Any:
        return await fl.streams().get(stream, group, id)

    item = run_client(ctx, body)
    if item is None:
        typer.secho(f"error: no item {id!r} in {stream}/{group}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    _print(item)


@app.command()
def delete(ctx: typer.Context, stream: str, group: str, id: str) -> None:
    """Delete an item (a tombstone on the log).

    Example: fluvial stream delete chat room-1 m1
    """
    _names(stream, group, id)
    async def body(fl: Any) -> None:
        await fl.streams().delete(stream, group, id)

    run_client(ctx, body)


@app.command("list")
def list_(ctx: typer.Context, stream: str, group: str) -> None:
    """Print a group's items as a JSON array (iii's getGroup).

    Example: fluvial stream list chat room-1
    """
    _names(stream, group)
    async def body(fl: Any) -> list:
        return await fl.streams().list(stream, group)

    _print(run_client(ctx, body))


@app.command()
def send(ctx: typer.Context, stream: str, group: str,
         event: Annotated[str, typer.Argument(metavar="EVENT", help="The event's type.")],
         data: Annotated[str, typer.Argument(metavar="JSON", help="The event's data, as JSON.")] = "null",
         id: Annotated[Optional[str], typer.Option("--id", help="Send to this item's subscribers.")] = None,
         partitions: Partitions = 1, replication: Replication = 1) -> None:
    """Send a custom event to a group's subscribers (or one item's, with --id).

    Example: fluvial stream send chat room-1 typing '{"user": "ann"}'
    """
    _names(stream, group, id)
    value = _json(data, "the event data")

    async def body(fl: Any) -> None:
        await fl.streams(partitions=partitions, replication=replication).send(
            stream, group, event, value, item_id=id)

    run_client(ctx, body)
