"""``fluvial partition list``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from fluvial.cli.common import OutputFormat, OutputOption, format_size, run_client

__all__ = ["app", "partition_record"]

app = typer.Typer(no_args_is_help=True, help="Show partitions.")


def partition_record(p: Any) -> dict[str, Any]:
    """A ``PartitionInfo`` as plain data (the JSON/YAML output)."""
    return {
        "topic": p.topic,
        "partition": p.partition,
        "leader": p.leader,
        "replicas": list(p.replicas),
        "resolution": p.resolution,
        "size": p.size,
        "base_offset": p.base_offset,
        "hw": p.hw,
        "leo": p.leo,
        "isr": list(p.isr),
        "lsr": p.lsr,
        "followers": [{"spu": f.spu, "hw": f.hw, "leo": f.leo} for f in p.followers],
        "system": p.system,
    }


def _size(size: int) -> str:
    return {-1: "error", -2: "unknown"}.get(size, format_size(size) if size >= 0 else str(size))


@app.command("list")
def list_(
    ctx: typer.Context,
    topic: Annotated[Optional[str], typer.Option("-t", "--topic", help="Only this topic's partitions.")] = None,
    system: Annotated[bool, typer.Option("--system", help="The system topics' partitions instead.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List partitions: leader, replicas, status, size and offsets as the SC last heard them.

    Example: fluvial partition list --topic orders
    """
    from fluvial.cli.output import print_rows

    async def body(fl: Any) -> list:
        if topic is not None:
            await fl.admin.describe_topic(topic)  # a missing topic is an error, not an empty list
        return await fl.admin.list_partitions(topic, system=system)

    parts = run_client(ctx, body, topic=topic)
    if output is not OutputFormat.table:
        print_rows([partition_record(p) for p in parts], [], output.value)
        return
    rows = []
    for p in parts:
        row = partition_record(p)
        row["size"] = _size(p.size)
        row["followers"] = ", ".join(f"{f.spu}: hw {f.hw} leo {f.leo}" for f in p.followers)
        rows.append(row)
    print_rows(rows, ["topic", "partition", "leader", "replicas", "resolution", "size", "hw", "leo",
                      "isr", "followers"], "table",
               headers=["TOPIC", "PARTITION", "LEADER", "REPLICAS", "RESOLUTION", "SIZE", "HW",
                        "LEO", "ISR", "FOLLOWER OFFSETS"], empty="no partitions")
