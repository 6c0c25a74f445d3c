"""``fluvial consumer list|delete``: stored consumer offsets."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer

from fluvial.cli.common import OutputFormat, OutputOption, fail, format_duration, run_client

__all__ = ["app", "consumer_record"]

app = typer.Typer(no_args_is_help=True, help="List and delete stored consumer offsets.")


def consumer_record(c: Any) -> dict[str, Any]:
    """A ``ConsumerOffsetInfo`` as plain data (the JSON/YAML output)."""
    return {"consumer_id": c.consumer_id, "topic": c.topic, "partition": c.partition,
            "offset": c.offset, "modified_time": c.modified_time}


def _ago(modified_time: int, now: float) -> str:
    if modified_time <= 0:
        return ""
    return format_duration(max(0, int(now - modified_time))) + " ago"


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the stored consumer offsets: the last record each consumer id read, per partition.

    Example: fluvial consumer list -O yaml
    """
    from fluvial.cli.output import print_rows

    async def body(fl: Any) -> list:
        return await fl.admin.list_consumer_offsets()

    offsets = run_client(ctx, body)
    rows = [consumer_record(c) for c in offsets]
    if output is OutputFormat.table:
        now = time.time()
        for row in rows:
            row["last_seen"] = _ago(row["modified_time"], now)
    print_rows(rows, ["consumer_id", "topic", "partition", "offset", "last_seen"], output.value,
               headers=["CONSUMER", "TOPIC", "PARTITION", "OFFSET", "LAST SEEN"],
               empty="no stored consumer offsets")


@app.command()
def delete(
    ctx: typer.Context,
    consumer_id: Annotated[str, typer.Argument(metavar="CONSUMER", help="The consumer id.")],
    topic: Annotated[Optional[str], typer.Option("-t", "--topic", help="Only its offsets for this topic.")] = None,
    partition: Annotated[Optional[int], typer.Option("-p", "--partition", min=0,
                                                     help="Only its offset for this partition.")] = None,
) -> None:
    """Forget a consumer's stored offsets (all of them, or one topic's or partition's).

    Example: fluvial consumer delete worker --topic jobs
    """
    async def body(fl: Any) -> list:
        deleted = []
        for c in await fl.admin.list_consumer_offsets():
            if c.consumer_id != consumer_id or (topic is not None and c.topic != topic) or (
                    partition is not None and c.partition != partition):
                continue
            await fl.admin.delete_consumer_offset(c.consumer_id, c.topic, c.partition)
            deleted.append(c)
        return deleted

    deleted = run_client(ctx, body, topic=topic)
    if not deleted:
        scope = "".join([f" on topic '{topic}'" if topic else "",
                         f" partition {partition}" if partition is not None else ""])
        fail(f"no stored offsets for consumer '{consumer_id}'{scope}",
             "list them with `fluvial consumer list`")
    for c in deleted:
        typer.echo(f"deleted the offset of consumer '{c.consumer_id}' for {c.topic} "
                   f"partition {c.partition}")
