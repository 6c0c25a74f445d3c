"""``fluvial topic create|list|describe|delete``.

``create -c FILE`` reads Fluvio's topic configuration file (``fluvio topic create --config``):

.. code-block:: yaml

    version: 0.1.0
    meta:
      name: orders
    partition:
      count: 3
      replication: 2
      max-size: 10 GiB
      ignore-rack-assignment: false
      maps:                          # explicit replica maps instead of count/replication
        - id: 0
          replicas: [5001, 5002]
    retention:
      time: 7 days
      segment-size: 1 GiB
    compression:
      type: lz4

It is YAML; fluvial reads it with a small parser for this block-style subset (mappings, lists,
flow lists like ``[5001, 5002]``, quoted and plain scalars, comments), so no YAML library is needed.
A ``.json`` or ``.toml`` file with the same structure works too. Options given on the command
line override the file.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fluvial.cli.common import (
    OutputFormat, OutputOption, fail, format_duration, format_size, parse_duration, parse_size,
    run_client, usage_error,
)
from fluvial.protocol.content_type import validate_content_type
from fluvial.protocol.internal_api import CLEANUP_POLICIES

__all__ = ["app", "load_topic_config", "parse_yaml", "topic_record"]

app = typer.Typer(no_args_is_help=True, help="Create, list, describe and delete topics.")

COMPRESSION_TYPES = ("any", "none", "gzip", "snappy", "lz4", "zstd")


# ------------------------------------------------------------------------ a small YAML reader


class YamlError(ValueError):
    """The text is not in the YAML subset ``parse_yaml`` reads; says what and on which line."""


_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


def _strip_comment(line: str) -> str:
    quote = None
    escaped = False
    for i, ch in enumerate(line):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _split_flow(text: str, lineno: int) -> list[str]:
    items, depth, quote, current = [], 0, None, []
    escaped = False
    for ch in text:
        if quote:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if quote or depth:
        raise YamlError(f"line {lineno}: unbalanced quotes or brackets")
    last = "".join(current).strip()
    if last or items:
        items.append(last)
    return items


def _scalar(text: str, lineno: int) -> Any:
    text = text.strip()
    if not text:
        return None
    if text[0] in "'\"":
        if len(text) < 2 or text[-1] != text[0]:
            raise YamlError(f"line {lineno}: unterminated string {text!r}")
        body = text[1:-1]
        if text[0] == '"':
            try:
                return json.loads(text)
            except ValueError as e:
                raise YamlError(f"line {lineno}: bad string {text!r}: {e}") from None
        return body.replace("''", "'")
    if text[0] == "[":
        if text[-1] != "]":
            raise YamlError(f"line {lineno}: unterminated list {text!r}")
        return [_scalar(item, lineno) for item in _split_flow(text[1:-1], lineno)]
    if text[0] == "{":
        if text[-1] != "}":
            raise YamlError(f"line {lineno}: unterminated mapping {text!r}")
        out = {}
        for item in _split_flow(text[1:-1], lineno):
            key, sep, value = item.partition(":")
            if not sep:
                raise YamlError(f"line {lineno}: expected 'key: value' in {text!r}")
            out[str(_scalar(key, lineno))] = _scalar(value, lineno)
        return out
    if text in ("~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _closing_quote(text: str) -> int:
    """The index of the quote that closes the string ``text`` starts with, or -1."""
    quote, i = text[0], 1
    while i < len(text):
        if text[i] == "\\" and quote == '"':
            i += 2
            continue
        if text[i] == quote:
            if quote == "'" and text[i + 1:i + 2] == "'":  # '' is a quote inside '...'
                i += 2
                continue
            return i
        i += 1
    return -1


def _key_value(content: str, lineno: int) -> tuple[str, str] | None:
    """``(key, rest)`` if ``content`` is ``key: rest`` (or ``key:``), else None."""
    if content[0] in "'\"":
        end = _closing_quote(content)
        if end > 0 and content[end + 1:end + 2] == ":" and content[end + 2:end + 3] in ("", " "):
            return str(_scalar(content[:end + 1], lineno)), content[end + 2:].strip()
        return None
    m = re.match(r"^([^:\[\]{}#,]+?):(?:\s+(.*))?$", content)
    if m is None:
        return None
    return m.group(1).strip(), (m.group(2) or "").strip()


def parse_yaml(text: str) -> Any:
    """Plain data from the block-style YAML subset that configuration files use.

    Supported: nested mappings, ``- item`` lists (of scalars or mappings), flow lists and
    mappings of scalars (``[1, 2]``, ``{a: 1}``), single- and double-quoted strings, ints,
    floats, booleans, null, ``#`` comments and a leading ``---``. Anchors, tags, multi-line
    strings and multiple documents are not.

    >>> parse_yaml("a:\\n  b: [1, 2]  # comment\\n  c: 'x y'\\nd:\\n- k: 1\\n  v: true\\n")
    {'a': {'b': [1, 2], 'c': 'x y'}, 'd': [{'k': 1, 'v': True}]}

    Raises:
        YamlError: something outside the subset, or inconsistent indentation.
    """
    lines: list[tuple[int, str, int]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[:len(raw) - len(raw.lstrip())]:
            raise YamlError(f"line {lineno}: tabs cannot indent YAML")
        content = _strip_comment(raw).rstrip()
        if not content.strip() or (not lines and content.strip() == "---"):
            continue
        lines.append((len(content) - len(content.lstrip()), content.strip(), lineno))
    if not lines:
        return None
    value, pos = _block(lines, 0, lines[0][0])
    if pos != len(lines):
        raise YamlError(f"line {lines[pos][2]}: unexpected indentation")
    return value


def _block(lines: list[tuple[int, str, int]], pos: int, indent: int) -> tuple[Any, int]:
    first = lines[pos][1]
    if first == "-" or first.startswith("- "):
        return _sequence(lines, pos, indent)
    if _key_value(first, lines[pos][2]) is None:
        if len(lines) > pos + 1 and lines[pos + 1][0] > indent:
            raise YamlError(f"line {lines[pos][2]}: expected 'key: value'")
        return _scalar(first, lines[pos][2]), pos + 1
    return _mapping(lines, pos, indent)


def _mapping(lines: list[tuple[int, str, int]], pos: int, indent: int) -> tuple[dict, int]:
    out: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][0] == indent:
        _, content, lineno = lines[pos]
        kv = _key_value(content, lineno)
        if kv is None:
            if content == "-" or content.startswith("- "):
                break
            raise YamlError(f"line {lineno}: expected 'key: value', got {content!r}")
        key, rest = kv
        if key in out:
            raise YamlError(f"line {lineno}: duplicate key {key!r}")
        pos += 1
        if rest:
            out[key] = _scalar(rest, lineno)
        elif pos < len(lines) and (lines[pos][0] > indent or (
                lines[pos][0] == indent and (lines[pos][1] == "-" or lines[pos][1].startswith("- ")))):
            out[key], pos = _block(lines, pos, lines[pos][0])
        else:
            out[key] = None
    if pos < len(lines) and lines[pos][0] > indent:
        raise YamlError(f"line {lines[pos][2]}: unexpected indentation")
    return out, pos


def _sequence(lines: list[tuple[int, str, int]], pos: int, indent: int) -> tuple[list, int]:
    out: list[Any] = []
    while pos < len(lines) and lines[pos][0] == indent and (
            lines[pos][1] == "-" or lines[pos][1].startswith("- ")):
        _, content, lineno = lines[pos]
        rest = content[1:].strip()
        if not rest:
            pos += 1
            if pos < len(lines) and lines[pos][0] > indent:
                item, pos = _block(lines, pos, lines[pos][0])
            else:
                item = None
            out.append(item)
            continue
        # "- key: value" opens a mapping whose keys line up with "key"; "- - x" a list
        item_indent = indent + (len(content) - len(rest))
        if rest == "-" or rest.startswith("- "):
            lines[pos] = (item_indent, rest, lineno)
            item, pos = _sequence(lines, pos, item_indent)
        elif _key_value(rest, lineno) is not None:
            lines[pos] = (item_indent, rest, lineno)
            item, pos = _mapping(lines, pos, item_indent)
        else:
            item, pos = _scalar(rest, lineno), pos + 1
        out.append(item)
    return out, pos


# ---------------------------------------------------------------------- the topic config file


def load_topic_config(path: Path) -> dict[str, Any]:
    """``create_topic`` arguments from a Fluvio topic configuration file (module docstring).

    Returns:
        A dict with some of: name, partitions, replication, ignore_rack, max_partition_size,
        assigned, retention, segment_size, compression.

    Raises:
        typer.BadParameter: an unreadable file or a value that does not fit.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise typer.BadParameter(f"cannot read {path}: {e}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = parse_yaml(text)
    except (YamlError, ValueError) as e:
        raise typer.BadParameter(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: expected a mapping at the top")

    def section(name: str) -> dict:
        value = data.get(name) or {}
        if not isinstance(value, dict):
            raise typer.BadParameter(f"{path}: '{name}' must be a mapping")
        return value

    known = {"version", "meta", "partition", "retention", "compression"}
    if data.get("deduplication") is not None:
        raise typer.BadParameter(f"{path}: deduplication is not supported by fluvial")
    unknown = sorted(set(data) - known - {"deduplication"})
    if unknown:
        raise typer.BadParameter(f"{path}: unknown section(s) {', '.join(unknown)}")
    out: dict[str, Any] = {}
    meta, part, retention, compression = (section(s) for s in ("meta", "partition", "retention",
                                                                  "compression"))
    if "name" in meta:
        out["name"] = str(meta["name"])
    for key, target in (("count", "partitions"), ("replication", "replication")):
        if part.get(key) is not None:
            if not isinstance(part[key], int) or isinstance(part[key], bool) or part[key] < 1:
                raise typer.BadParameter(f"{path}: partition.{key} must be a positive integer")
            out[target] = part[key]
    if part.get("ignore-rack-assignment") is not None:
        out["ignore_rack"] = bool(part["ignore-rack-assignment"])
    if part.get("max-size") is not None:
        out["max_partition_size"] = parse_size(str(part["max-size"]))
    if part.get("maps") is not None:
        maps = part["maps"]
        try:
            out["assigned"] = {int(m["id"]): [int(s) for s in m["replicas"]] for m in maps}
        except (TypeError, KeyError, ValueError):
            raise typer.BadParameter(f"{path}: partition.maps must be a list of "
                                     f"{{id: N, replicas: [spu ids]}}") from None
    if retention.get("time") is not None:
        value = retention["time"]
        out["retention"] = int(value if isinstance(value, (int, float)) else parse_duration(str(value)))
    if retention.get("segment-size") is not None:
        out["segment_size"] = parse_size(str(retention["segment-size"]))
    if compression.get("type") is not None:
        out["compression"] = _compression(str(compression["type"]))
    return out


def _compression(value: str) -> str:
    name = value.strip().lower()
    if name not in COMPRESSION_TYPES:
        usage_error(f"compression type must be one of {', '.join(COMPRESSION_TYPES)}, not {value!r}")
    return name


# -------------------------------------------------------------------------------- the commands


def topic_record(info: Any) -> dict[str, Any]:
    """A ``TopicInfo`` as plain data (the JSON/YAML output)."""
    return {
        "name": info.name,
        "partitions": info.partitions,
        "replication_factor": info.replication_factor,
        "retention_seconds": info.retention_seconds,
        "segment_size": info.segment_size,
        "max_partition_size": info.max_partition_size,
        "compression": info.compression,
        "ignore_rack_assignment": info.ignore_rack_assignment,
        "system": info.system,
        "status": info.resolution,
        "reason": info.reason,
        "replica_map": {str(p): list(r) for p, r in sorted(info.assigned.items())},
    }


def _topic_row(info: Any) -> dict[str, Any]:
    row = topic_record(info)
    row["retention"] = format_duration(info.retention_seconds)
    row["segment_size"] = format_size(info.segment_size) if info.segment_size else "default"
    row["max_partition_size"] = (format_size(info.max_partition_size) if info.max_partition_size
                                 else "default")
    return row


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="The topic name (lowercase letters, digits and '-').")] = None,
    partitions: Annotated[Optional[int], typer.Option("-p", "--partitions", min=1,
                                                      help="How many partitions (default 1).")] = None,
    replication: Annotated[Optional[int], typer.Option("-r", "--replication", min=1,
                                                       help="Copies of each partition (default 1).")] = None,
    retention_time: Annotated[Optional[str], typer.Option(
        "--retention-time", metavar="DURATION", help="Keep records this long, e.g. 7d, 12h "
                                                     "(default 7d).")] = None,
    segment_size: Annotated[Optional[str], typer.Option(
        "--segment-size", metavar="SIZE", help="Bytes per segment file, e.g. 1GiB.")] = None,
    max_partition_size: Annotated[Optional[str], typer.Option(
        "--max-partition-size", metavar="SIZE", help="The most bytes a partition keeps, e.g. 10GiB.")] = None,
    compression_type: Annotated[Optional[str], typer.Option(
        "--compression-type", metavar="TYPE",
        help="any (producers choose; default), none, gzip, snappy, lz4 or zstd.")] = None,
    ignore_rack_assignment: Annotated[Optional[bool], typer.Option(
        "-i", "--ignore-rack-assignment", help="Place replicas without regard to racks.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "-c", "--config", exists=True, dir_okay=False, metavar="FILE",
        help="A topic configuration file (Fluvio's YAML format); the options above override it.")] = None,
    min_isr: Annotated[Optional[int], typer.Option(
        "--min-isr", min=1, help="In-sync replicas a ReadCommitted produce needs (default: 2 when "
                                 "-r >= 3, else 1).")] = None,
    unclean_leader_election: Annotated[Optional[bool], typer.Option(
        "--unclean-leader-election/--no-unclean-leader-election",
        help="Let an out-of-sync replica lead when no in-sync one is alive (may lose committed "
             "records; off by default).")] = None,
    cleanup_policy: Annotated[Optional[str], typer.Option(
        "--cleanup-policy", metavar="POLICY",
        help="delete (retention deletes old segments; default) or compact (keep the latest record "
             "per key; an empty value deletes the key).")] = None,
    tombstone_retention: Annotated[Optional[str], typer.Option(
        "--tombstone-retention", metavar="DURATION",
        help="With compact: keep a delete (empty value) this long before dropping it, e.g. 1h "
             "(default 1d).")] = None,
    min_compaction_lag: Annotated[Optional[str], typer.Option(
        "--min-compaction-lag", metavar="DURATION",
        help="With compact: leave records younger than this uncompacted (default 0s).")] = None,
    min_cleanable_dirty_ratio: Annotated[Optional[float], typer.Option(
        "--min-cleanable-dirty-ratio", min=0.0, max=1.0,
        help="With compact: start a pass when this share of the sealed data is uncleaned "
             "(default 0.5).")] = None,
    content_type: Annotated[Optional[str], typer.Option(
        "--content-type", metavar="TYPE",
        help="What the values are: application/json, text/plain, application/octet-stream... "
             "(fluvial's producers check values against it).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only check that the cluster would accept it.")] = False,
) -> None:
    """Create a topic.

    Example: fluvial topic create orders -p 3 -r 2 --retention-time 7d --segment-size 1GiB
    """
    settings = load_topic_config(config) if config is not None else {}
    if name is not None:
        settings["name"] = name
    if "name" not in settings:
        usage_error("give the topic name (or meta.name in the --config file)")
    given = {"partitions": partitions, "replication": replication, "ignore_rack": ignore_rack_assignment,
             "min_isr": min_isr, "unclean_leader_election": unclean_leader_election}
    settings.update({k: v for k, v in given.items() if v is not None})
    if retention_time is not None:
        settings["retention"] = int(parse_duration(retention_time))
    if segment_size is not None:
        settings["segment_size"] = parse_size(segment_size)
    if max_partition_size is not None:
        settings["max_partition_size"] = parse_size(max_partition_size)
    if compression_type is not None:
        settings["compression"] = _compression(compression_type)
    if cleanup_policy is not None:
        if cleanup_policy not in CLEANUP_POLICIES:
            usage_error(f"--cleanup-policy must be one of {', '.join(CLEANUP_POLICIES)}, not {cleanup_policy!r}")
        settings["cleanup_policy"] = cleanup_policy
    if tombstone_retention is not None:
        settings["tombstone_retention"] = parse_duration(tombstone_retention)
    if min_compaction_lag is not None:
        settings["min_compaction_lag"] = parse_duration(min_compaction_lag)
    if min_cleanable_dirty_ratio is not None:
        settings["min_cleanable_dirty_ratio"] = min_cleanable_dirty_ratio
    if content_type is not None:
        try:
            settings["content_type"] = validate_content_type(content_type)
        except ValueError as e:
            usage_error(f"--content-type: {e}")
    if "assigned" in settings and (partitions is not None or replication is not None):
        usage_error("the config file's partition.maps fixes the replicas; drop -p/-r")
    if settings.get("retention") is not None and settings["retention"] < 1:
        usage_error("--retention-time must be at least 1s")
    if settings.get("segment_size") is not None and not 0 < settings["segment_size"] < 1 << 32:
        usage_error("--segment-size must be between 1 byte and 4GiB")
    topic = settings.pop("name")
    args = {"partitions": settings.pop("partitions", 1), "replication": settings.pop("replication", 1)}

    async def body(fl: Any) -> None:
        await fl.admin.create_topic(topic, args["partitions"], args["replication"], dry_run=dry_run,
                                    **settings)

    run_client(ctx, body, topic=topic)
    typer.echo(f"topic '{topic}' {'is valid (dry run)' if dry_run else 'created'}")


@app.command("list")
def list_(
    ctx: typer.Context,
    output: OutputOption = OutputFormat.table,
    system: Annotated[bool, typer.Option("--system", help="List the system topics instead.")] = False,
) -> None:
    """List the topics.

    Example: fluvial topic list -O json
    """
    from fluvial.cli.output import print_rows

    async def body(fl: Any) -> list:
        return await fl.admin.list_topics(system=system)

    topics = sorted(run_client(ctx, body), key=lambda t: t.name)
    if output is OutputFormat.table:
        print_rows([_topic_row(t) for t in topics],
                   ["name", "partitions", "replication_factor", "retention", "compression",
                    "status", "reason"], "table",
                   headers=["NAME", "PARTITIONS", "REPLICAS", "RETENTION", "COMPRESSION", "STATUS",
                            "REASON"], empty="no topics")
    else:
        print_rows([topic_record(t) for t in topics], [], output.value)


@app.command()
def describe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The topic.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a topic's settings and status.

    Example: fluvial topic describe orders -O yaml
    """
    from fluvial.cli.output import print_data

    async def body(fl: Any) -> Any:
        return await fl.admin.describe_topic(name)

    info = run_client(ctx, body, topic=name)
    if output is OutputFormat.table:
        row = _topic_row(info)
        row["replica_map"] = "; ".join(f"{p}: {', '.join(map(str, r))}" for p, r in row["replica_map"].items())
        del row["retention_seconds"]
        print_data({k: row[k] for k in ("name", "partitions", "replication_factor", "retention",
                                        "segment_size", "max_partition_size", "compression",
                                        "ignore_rack_assignment", "system", "status", "reason",
                                        "replica_map")}, "table")
    else:
        print_data(topic_record(info), output.value)


@app.command()
def delete(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="The topic(s) to delete.", metavar="NAME...")],
    continue_on_error: Annotated[bool, typer.Option(
        "--continue-on-error", help="Go on with the other topics when one cannot be deleted.")] = False,
) -> None:
    """Delete topics and all their records.

    Example: fluvial topic delete orders invoices
    """
    from fluvial.cli.common import describe_error
    from fluvial.cli.output import print_error
    from fluvial.errors import FluvialError

    async def body(fl: Any) -> list[str]:
        failed = []
        for name in names:
            try:
                await fl.admin.delete_topic(name)
            except FluvialError as e:
                message, hint, code = describe_error(e, topic=name)
                print_error(message, hint)
                if not continue_on_error:
                    raise typer.Exit(code) from None
                failed.append(name)
                continue
            typer.echo(f"topic '{name}' deleted")
        return failed

    failed = run_client(ctx, body)
    if failed:
        fail(f"{len(failed)} topic(s) not deleted: {', '.join(failed)}")
