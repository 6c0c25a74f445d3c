"""``fluvial consume TOPIC``: print a topic's records.

Records are printed as the client hands them over, one ``receive_many`` list at a time, each list
formatted into one ``bytes`` and written to stdout with one ``write`` and one ``flush``: a live
consumer shows records as they arrive, and a bulk read is not slowed down by a write per record.
Ctrl-C stops the consumer cleanly (with ``-c``, its offsets are stored) and exits with 0.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fluvial.cli import common
from fluvial.cli.common import parse_size, run_client, usage_error
from fluvial.cli.produce import ISOLATIONS, normalize_choice

__all__ = ["ConsumeOutput", "RecordFormatter", "consume", "hex_dump", "is_binary", "register"]


class ConsumeOutput(str, Enum):
    """How ``-O`` prints each record's value."""

    dynamic = "dynamic"  # text, or a hex dump when the value is binary
    text = "text"  # text (invalid UTF-8 replaced); "binary: (N bytes)" for binary values
    binary = "binary"  # a hex dump
    json = "json"  # the value parsed as JSON, printed on one line
    raw = "raw"  # the value's bytes exactly, with nothing added


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]*)\s*\}\}")
_FIELDS = ("key", "value", "offset", "partition", "time")


def is_binary(value: bytes) -> bool:
    """A value is binary when it holds a NUL byte or is not valid UTF-8."""
    if b"\x00" in value:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def hex_dump(value: bytes) -> bytes:
    """``hexdump -C`` style: offset, 16 bytes in hex (two groups of 8), the printable ones.

    >>> hex_dump(b"hello\\x00")
    b'00000000  68 65 6c 6c 6f 00                                 |hello.|\\n'
    """
    lines = []
    for at in range(0, len(value), 16):
        row = value[at:at + 16]
        hexes = " ".join(f"{b:02x}" for b in row[:8])
        if len(row) > 8:
            hexes += "  " + " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{at:08x}  {hexes:<49} |{text}|\n")
    if not value:
        lines.append("00000000  (empty)\n")
    return "".join(lines).encode()


def _rfc3339(timestamp_ms: int) -> str:
    if timestamp_ms < 0:
        return "NA"
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(data: bytes | None) -> str:
    return "null" if data is None else data.decode("utf-8", "replace")


class RecordFormatter:
    """Turns lists of ``Record`` into the bytes ``consume`` prints. Pure: no I/O.

    Args:
        output: the ``-O`` choice.
        template: the ``-F`` template (``{{key}} {{value}} {{offset}} {{partition}} {{time}}``);
            replaces ``output``.
        show_key: ``-k``: prefix each record with ``[key] `` (``[null]`` without a key).
        warn: called with a message for each value that ``-O json`` cannot parse (skipped).

    Raises:
        typer.BadParameter: a template with an unknown placeholder.
    """

    def __init__(self, output: ConsumeOutput = ConsumeOutput.dynamic, template: str | None = None,
                 show_key: bool = False, warn: Callable[[str], None] | None = None):
        self.output = output
        self.show_key = show_key
        self.warn = warn or (lambda message: None)
        self._template: list[str | tuple[str]] | None = None
        if template is not None:
            parts: list[str | tuple[str]] = []
            pos = 0
            for m in _PLACEHOLDER.finditer(template):
                if m.group(1) not in _FIELDS:
                    raise typer.BadParameter(f"unknown placeholder {m.group(0)!r} in the template; "
                                             f"use {', '.join('{{' + f + '}}' for f in _FIELDS)}")
                parts.append(template[pos:m.start()])
                parts.append((m.group(1),))
                pos = m.end()
            parts.append(template[pos:])
            self._template = [p for p in parts if p != ""]

    def format(self, records: Sequence[Any]) -> bytes:
        """The bytes to print for ``records`` (each a ``Record``), in order."""
        if self._template is not None:
            return "".join(self._render(r) for r in records).encode("utf-8", "replace")
        output = self.output
        if output is ConsumeOutput.raw and not self.show_key:
            return b"".join([r[3] for r in records])
        if output in (ConsumeOutput.dynamic, ConsumeOutput.text) and not self.show_key:
            values = [r[3] for r in records]
            joined = b"\n".join(values) + b"\n"
            if not is_binary(joined):  # then no value is binary: print them as they are
                return joined
        return b"".join([self._one(r) for r in records])

    def _one(self, record: Any) -> bytes:
        value = record[3]
        output = self.output
        if output is ConsumeOutput.raw:
            body = value
        elif output is ConsumeOutput.binary:
            body = hex_dump(value)
        elif output is ConsumeOutput.json:
            try:
                parsed = json.loads(value)
            except ValueError as e:
                self.warn(f"partition {record[0]} offset {record[1]}: the value is not JSON "
                          f"({e}); skipped")
                return b""
            body = json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        elif is_binary(value):
            body = (hex_dump(value) if output is ConsumeOutput.dynamic
                    else f"binary: ({len(value)} bytes)\n".encode())
        else:
            body = value + b"\n"
        if self.show_key:
            return b"[" + _text(record[2]).encode() + b"] " + body
        return body

    def _render(self, record: Any) -> str:
        values = {
            "key": lambda: _text(record[2]),
            "value": lambda: record[3].decode("utf-8", "replace"),
            "offset": lambda: str(record[1]),
            "partition": lambda: str(record[0]),
            "time": lambda: _rfc3339(record[4]),
        }
        assert self._template is not None
        text = "".join(p if isinstance(p, str) else values[p[0]]() for p in self._template)
        if self.show_key:
            text = f"[{_text(record[2])}] {text}"
        return text + "\n"


def consume(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic to read.")],
    partition: Annotated[Optional[list[int]], typer.Option(
        "-p", "--partition", min=0, help="Read this partition (repeat for several).")] = None,
    all_partitions: Annotated[bool, typer.Option(
        "-A", "--all-partitions", help="Read every partition (the default).")] = False,
    disable_continuous: Annotated[bool, typer.Option(
        "-d", "--disable-continuous", help="Stop at the end of the log instead of waiting for "
                                           "new records.")] = False,
    key_value: Annotated[bool, typer.Option(
        "-k", "--key-value", help="Print each record as '\\[key] value' ('\\[null]' without a key).")] = False,
    format: Annotated[Optional[str], typer.Option(
        "-F", "--format", metavar="TEMPLATE",
        help="Print each record with this template; it may use {{key}}, {{value}}, {{offset}}, "
             "{{partition}} and {{time}} (RFC 3339, UTC).")] = None,
    beginning: Annotated[bool, typer.Option(
        "-B", "--beginning", help="Start at the beginning of the log.")] = False,
    head: Annotated[Optional[int], typer.Option(
        "-H", "--head", min=0, metavar="N", help="Start N records after the beginning of the log.")] = None,
    tail: Annotated[Optional[int], typer.Option(
        "-T", "--tail", min=0, metavar="N", help="Start N records before the end of the log "
                                                 "(the last N records).")] = None,
    start: Annotated[Optional[int], typer.Option(
        "--start", min=0, metavar="OFFSET", help="Start at this absolute offset.")] = None,
    end: Annotated[Optional[int], typer.Option(
        "--end", min=0, metavar="OFFSET", help="Stop after this offset (inclusive).")] = None,
    max_bytes: Annotated[Optional[str], typer.Option(
        "-b", "--maxbytes", "--max-bytes", metavar="SIZE",
        help="The most record bytes per response from the SPU, e.g. 1MiB.")] = None,
    isolation: Annotated[Optional[str], typer.Option(
        "--isolation", metavar="LEVEL", help="read_uncommitted (everything the leader has, "
                                             "default) or read_committed (only what is committed).")] = None,
    output: Annotated[Optional[ConsumeOutput], typer.Option(
        "-O", "--output", case_sensitive=False,
        help="dynamic (text, or a hex dump for binary values; default), text, binary (hex "
             "dump), json (the value parsed, one line each) or raw (the bytes, nothing added).")] = None,
    consumer: Annotated[Optional[str], typer.Option(
        "-c", "--consumer", metavar="ID", help="Store the offsets read under this consumer id, and "
                                               "resume where it left off.")] = None,
    group: Annotated[Optional[str], typer.Option(
        "-G", "--group", metavar="GROUP", help="Read as a member of this consumer group: the members "
                                               "share the partitions; offsets are committed for the "
                                               "group. With -B a partition without a committed "
                                               "offset starts at the beginning (default: the end).")] = None,
    stream: Annotated[Optional[str], typer.Option(
        "--stream", metavar="ID", help="Print bounded stream ID (from the beginning, or --start) "
                                       "and exit 0 at its end; non-zero if it is incomplete.")] = None,
    smartmodule: Annotated[Optional[str], typer.Option(
        "--smartmodule", metavar="NAME", help="Run this SmartModule (created with 'fluvial "
                                              "smartmodule create') over the records.")] = None,
    smartmodule_path: Annotated[Optional[Path], typer.Option(
        "--smartmodule-path", metavar="FILE", help="Run this .wasm SmartModule over the records.")] = None,
    params: Annotated[Optional[list[str]], typer.Option(
        "-e", "--params", metavar="KEY=VALUE", help="A parameter for the SmartModule (repeat for "
                                                    "several).")] = None,
    aggregate_initial: Annotated[Optional[str], typer.Option(
        "--aggregate-initial", metavar="VALUE", help="The initial accumulator of an aggregate "
                                                     "SmartModule.")] = None,
    transforms: Annotated[Optional[Path], typer.Option(
        "--transforms", "--transforms-file", metavar="FILE",
        help="A chain of SmartModules on the cluster, as Fluvio's transformation file "
             "(YAML or JSON: transforms: [{uses: NAME, with: {...}, lookback: {last: N}}]).")] = None,
    transforms_line: Annotated[Optional[list[str]], typer.Option(
        "--transforms-line", "--transform", metavar="JSON",
        help="One step of a chain as JSON, e.g. '{\"uses\":\"my-filter\",\"with\":{\"k\":\"v\"}}' "
             "(repeat for several).")] = None,
) -> None:
    """Read records from a topic and print them on stdout.

    Without -B, -H, -T or --start only new records are shown (with -c: from where that consumer left off).

    It waits for new records until Ctrl-C (exit code 0), unless -d or --end says when to stop.

    Example: fluvial consume greetings -B -d -F '{{partition}}:{{offset}} {{value}}'
    """
    starts = [flag for flag, given in (("-B", beginning), ("-H", head is not None),
                                       ("-T", tail is not None), ("--start", start is not None)) if given]
    if len(starts) > 1:
        usage_error(f"{' and '.join(starts)} each say where to start; give one")
    if partition and all_partitions:
        usage_error("give -p/--partition or -A/--all-partitions, not both")
    if format is not None and output is not None:
        usage_error("give -F/--format or -O/--output, not both")
    if start is not None and end is not None and end < start:
        usage_error(f"--end {end} is before --start {start}")
    if group is not None:
        other = [flag for flag, given in (
            ("-p", bool(partition)), ("-H", head is not None), ("-T", tail is not None),
            ("--start", start is not None), ("--end", end is not None), ("-d", disable_continuous),
            ("-c", consumer is not None)) if given]
        if other:
            usage_error(f"--group shares the partitions and starts at the group's offsets: "
                        f"{', '.join(other)} cannot be used with it")
    from fluvial import Offset
    from fluvial.cli.output import print_warning

    if beginning:
        offset, where = Offset.beginning(), " from the beginning of the log"
    elif head is not None:
        offset, where = Offset.from_beginning(head), f" starting {head} from the beginning of the log"
    elif tail is not None:
        offset, where = Offset.from_end(tail), f" starting {tail} from the end of the log"
    elif start is not None:
        offset, where = Offset.absolute(start), f" starting at offset {start}"
    else:
        offset, where = Offset.end(), ""
    config: dict[str, Any] = {"offset": offset, "continuous": not disable_continuous}
    if partition:
        config["partition"] = sorted(set(partition))
    if end is not None:
        config["end"] = end
        where += f" until offset {end} (inclusive)"
    if max_bytes is not None:
        config["max_bytes"] = parse_size(max_bytes)
        if not 0 < config["max_bytes"] <= 0x7FFFFFFF:
            usage_error("--maxbytes must be between 1 byte and 2GiB")
    if isolation is not None:
        config["isolation"] = normalize_choice(isolation, ISOLATIONS, "--isolation")
    if consumer is not None:
        config["consumer_id"] = consumer
        config["commit"] = "auto"
        config["flush_interval"] = 2.0  # as Fluvio's CLI
    if group is not None:
        config = {"group": group, "start": "beginning" if beginning else "end",
                  **{k: v for k, v in config.items() if k in ("max_bytes", "isolation")}}
        where = f" as a member of group '{group}'"
    from fluvial.cli.smartmodule import smartmodule_chain, transforms_chain

    chain = smartmodule_chain(smartmodule, smartmodule_path, params, aggregate_initial)
    steps = transforms_chain(transforms, transforms_line)
    if chain and steps:
        usage_error("give --smartmodule/--smartmodule-path or --transforms/--transforms-line, not both")
    chain = chain or steps
    if chain and group is not None:
        usage_error("SmartModules run on plain consumers: drop --group, or the SmartModule options")
    if chain:
        config["smartmodules"] = chain
    formatter = RecordFormatter(output or ConsumeOutput.dynamic, format, key_value, print_warning)
    if stream is not None:
        from fluvial.cli.stream_cmd import consume_stream

        if partition or all_partitions or consumer or group or end is not None or disable_continuous:
            usage_error("--stream reads its own partition to the stream's end: drop -p, -A, -c, -G, "
                        "--end and -d")
        config["offset"] = Offset.absolute(start) if start is not None else Offset.beginning()
        run_client(ctx, lambda fl: consume_stream(fl, topic, stream, formatter, config),
                   topic=topic)
        return
    run_client(ctx, lambda fl: _consume(fl, topic, config, formatter, f"Consuming records from "
                                                                      f"'{topic}'{where}"),
               topic=topic, stop_on_interrupt=True)


async def _consume(fl: Any, topic: str, config: dict[str, Any], formatter: RecordFormatter,
                   status: str) -> None:
    from fluvial.cli.output import print_note, stdout_is_terminal

    if "partition" in config:
        await common.check_partitions(fl, topic, config["partition"])
    out = sys.stdout.buffer
    async with fl.consumer(topic, **config) as records:
        if stdout_is_terminal():
            print_note(status)
        while batch := await records.receive_many():
            data = formatter.format(batch)
            if data:
                out.write(data)
                out.flush()


def register(app: typer.Typer) -> None:
    app.command("consume")(consume)
