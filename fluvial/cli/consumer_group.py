"""``fluvial consumer-group list|describe|delete|reset-offsets``: consumer groups
(``fluvial.client.group``; the group's members consume with ``fluvial consume T --group G``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Optional

import typer

from fluvial.cli.common import OutputFormat, OutputOption, fail, run_client, usage_error

__all__ = ["app", "group_rows", "parse_datetime"]

app = typer.Typer(no_args_is_help=True, help="List, describe, delete consumer groups and reset their offsets.")


def parse_datetime(text: str) -> int:
    """An ISO 8601 time as milliseconds since the epoch; without a zone it is UTC.

    >>> parse_datetime("2026-01-02T03:04:05Z")
    1767323045000
    """
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 date and time "
                                 "(e.g. 2026-01-02T03:04:05Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def group_rows(info: Any, ends: dict[int, int]) -> list[dict[str, Any]]:
    """One row per partition of a described group: its member, committed offset, end and lag.
    Pure: ``ends`` is each partition's HW (missing: unknown)."""
    owner = {p: m for m in info.members for p in m.assigned}
    committed = {o.partition: o.offset for o in info.offsets if o.topic == info.topic}
    rows = []
    for p in sorted(set(ends) | set(committed) | set(owner)):
        m = owner.get(p)
        c = committed.get(p)
        end = ends.get(p)
        rows.append({"topic": info.topic, "partition": p,
                     "member": m.member_id if m else None, "host": m.host if m else None,
                     "committed": c, "end": end,
                     "lag": None if end is None else end - (c if c is not None else 0)})
    return rows


async def _ends(fl: Any, topic: str) -> dict[int, int]:
    from fluvial.client.consumer import fetch_partition_offsets
    from fluvial.errors import FluvialError

    if not topic:
        return {}
    try:
        info = await fl.admin.describe_topic(topic)
    except FluvialError:
        return {}  # the topic is gone: the group's offsets are still shown
    out = {}
    for p in range(info.partitions):
        try:
            out[p] = (await fetch_partition_offsets(fl, topic, p)).last_stable_offset
        except FluvialError:
            continue
    return out


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the consumer groups: topic, generation, members.

    Example: fluvial consumer-group list -O json
    """
    from fluvial.cli.output import print_rows
    from fluvial.client.group import describe_groups

    groups = run_client(ctx, lambda fl: describe_groups(fl))
    rows = [{"group": i.name, "topic": i.topic, "generation": i.generation, "members": len(i.members)}
            for i in groups]
    print_rows(rows, ["group", "topic", "generation", "members"], output.value,
               headers=["GROUP", "TOPIC", "GENERATION", "MEMBERS"], empty="no consumer groups")


@app.command()
def describe(ctx: typer.Context,
             group: Annotated[str, typer.Argument(metavar="GROUP", help="The group.")],
             output: OutputOption = OutputFormat.table) -> None:
    """A group's members (host, assigned partitions) and, per partition, the committed offset
    and the lag (records not yet committed).

    Example: fluvial consumer-group describe billing
    """
    from fluvial.cli.output import print_data, print_note
    from fluvial.client.group import describe_groups

    async def body(fl: Any):
        [info] = await describe_groups(fl, group)
        return info, await _ends(fl, info.topic)

    info, ends = run_client(ctx, body)
    rows = group_rows(info, ends)
    if output is OutputFormat.table:
        print_note(f"group '{info.name}' topic '{info.topic}' generation {info.generation}, "
                   f"{len(info.members)} members")
        print_data(rows, "table", columns=["partition", "member", "host", "committed", "end", "lag"],
                   headers=["PARTITION", "MEMBER", "HOST", "COMMITTED", "END", "LAG"])
        return
    print_data({"group": info.name, "topic": info.topic, "generation": info.generation,
                "members": [{"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                             "partitions": list(m.assigned)} for m in info.members],
                "partitions": rows}, output.value)


@app.command()
def delete(ctx: typer.Context,
           group: Annotated[str, typer.Argument(metavar="GROUP", help="The group.")]) -> None:
    """Delete a group and its committed offsets (refused while it has members).

    Example: fluvial consumer-group delete billing
    """
    from fluvial.client.group import delete_group

    run_client(ctx, lambda fl: delete_group(fl, group))
    typer.echo(f"deleted consumer group '{group}'")


@app.command("reset-offsets")
def reset_offsets(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(metavar="GROUP", help="The group.")],
    topic: Annotated[str, typer.Option("-t", "--topic", help="The topic whose offsets to reset.")],
    to_earliest: Annotated[bool, typer.Option("--to-earliest", help="The first record still stored.")] = False,
    to_latest: Annotated[bool, typer.Option("--to-latest", help="The end: only new records.")] = False,
    to_offset: Annotated[Optional[int], typer.Option("--to-offset", min=0, metavar="N",
                                                     help="This offset in every partition.")] = None,
    to_datetime: Annotated[Optional[str], typer.Option(
        "--to-datetime", metavar="ISO", help="The first record at or after this time (e.g. "
                                             "2026-01-02T03:04:05Z).")] = None,
    partition: Annotated[Optional[list[int]], typer.Option(
        "-p", "--partition", min=0, help="Only this partition (repeat for several).")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Set where the group's members start reading each partition. Refused while the group has
    members: stop them first.

    Example: fluvial consumer-group reset-offsets billing --topic invoices --to-earliest
    """
    chosen = [f for f, given in (("--to-earliest", to_earliest), ("--to-latest", to_latest),
                                 ("--to-offset", to_offset is not None),
                                 ("--to-datetime", to_datetime is not None)) if given]
    if len(chosen) != 1:
        usage_error("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime")
    when = parse_datetime(to_datetime) if to_datetime is not None else None
    from fluvial.cli.output import print_rows
    from fluvial.client.consumer import fetch_partition_offsets
    from fluvial.client.group import GroupRequestError, describe_groups, offset_for_time, set_group_offsets
    from fluvial.metadata.group import GroupError

    async def body(fl: Any) -> dict[int, int]:
        try:
            [info] = await describe_groups(fl, group)
            if info.members:
                fail(f"group '{group}' has {len(info.members)} members; stop them first",
                     f"see them with `fluvial consumer-group describe {group}`")
        except GroupRequestError as e:
            if e.group_error != GroupError.GROUP_NOT_FOUND:
                raise
        count = (await fl.admin.describe_topic(topic)).partitions
        wanted = sorted(set(partition)) if partition else list(range(count))
        bad = [p for p in wanted if p >= count]
        if bad:
            fail(f"topic '{topic}' has no partition {', '.join(map(str, bad))}")
        offsets = {}
        for p in wanted:
            entry = await fetch_partition_offsets(fl, topic, p)
            if to_earliest:
                offsets[p] = entry.start_offset
            elif to_latest:
                offsets[p] = entry.last_stable_offset
            elif to_offset is not None:
                offsets[p] = min(max(to_offset, entry.start_offset), entry.last_stable_offset)
            else:
                offsets[p] = await offset_for_time(fl, topic, p, when)
        await set_group_offsets(fl, group, topic, offsets)
        return offsets

    offsets = run_client(ctx, body, topic=topic)
    print_rows([{"group": group, "topic": topic, "partition": p, "offset": o} for p, o in offsets.items()],
               ["group", "topic", "partition", "offset"], output.value,
               headers=["GROUP", "TOPIC", "PARTITION", "NEW OFFSET"])
