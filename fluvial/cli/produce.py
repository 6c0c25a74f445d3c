"""``fluvial produce TOPIC``: records from stdin or a file.

Each line is one record (the line ending, ``\\n`` or ``\\r\\n``, is not part of it; an empty line
is an empty record); ``--raw`` sends the whole input as one record. Input is read in chunks of up
to ``CHUNK_BYTES`` and every chunk's records are queued with one ``send_many`` (the producer
batches them and keeps requests in flight; nothing waits per record), then one ``flush`` at the
end waits for every acknowledgement. When stdin is a terminal, each line typed is flushed at
once, so that a failure shows up right away.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import trio
import typer

from fluvial.cli import common
from fluvial.cli.common import format_size, parse_duration, parse_size, run_client, usage_error

__all__ = ["produce", "register", "split_lines"]

CHUNK_BYTES = 1 << 20
_MAX_SEPARATOR_WARNINGS = 10


class CompressionChoice(str, Enum):
    none = "none"
    gzip = "gzip"
    snappy = "snappy"
    lz4 = "lz4"
    zstd = "zstd"


def normalize_choice(value: Optional[str], choices: tuple[str, ...], what: str) -> Optional[str]:
    """``value`` lower-cased with '-' as '_' if it is one of ``choices`` (Fluvio spells them
    both ways); exit 2 otherwise."""
    if value is None:
        return None
    canonical = value.strip().lower().replace("-", "_")
    aliases = {c.replace("_", ""): c for c in choices}
    canonical = aliases.get(canonical.replace("_", ""), canonical)
    if canonical not in choices:
        usage_error(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return canonical


ISOLATIONS = ("read_uncommitted", "read_committed")
DELIVERY_SEMANTICS = ("at_least_once", "at_most_once")


def split_lines(pending: list[bytes], data: bytes) -> list[bytes]:
    """The complete lines in ``pending`` + ``data``, without their endings; what is left after
    the last newline stays in ``pending`` (a list, so that a long line is joined only once).

    >>> pending = [b"a"]
    >>> split_lines(pending, b"b\\nc\\r\\nd"), pending
    ([b'ab', b'c'], [b'd'])
    """
    if b"\n" not in data:
        if data:
            pending.append(data)
        return []
    if pending:
        data = b"".join(pending) + data
        pending.clear()
    lines = data.split(b"\n")
    tail = lines.pop()
    if tail:
        pending.append(tail)
    if b"\r" in data:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return lines


class _Input:
    """Chunks of the input: a regular file (with its size, for the progress bar), or a stream
    (stdin, a pipe, a FIFO) read as data arrives."""

    def __init__(self, file: Optional[Path]):
        self.path = file
        self.interactive = file is None and _isatty(sys.stdin)
        self.total: int | None = None
        self._fd: int | None = None
        if file is not None:
            try:
                self._f: Any = open(file, "rb")  # noqa: SIM115 - closed in close()
                st = os.fstat(self._f.fileno())
            except OSError as e:
                common.fail(f"cannot read {file}: {e.strerror or e}")
            if stat.S_ISREG(st.st_mode):
                self.total = st.st_size
            else:
                self._fd = self._f.fileno()
        else:
            self._f = sys.stdin.buffer
            try:
                self._fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError):  # not a real stream (CliRunner)
                self._fd = None

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self.total is not None:  # a regular file: reads do not wait
                data = self._f.read(CHUNK_BYTES)
                await trio.lowlevel.checkpoint()
            else:
                # what is available now (a slow pipe is sent as it comes), read in a thread so
                # that the producer keeps sending meanwhile
                data = await trio.to_thread.run_sync(self._read_some, abandon_on_cancel=True)
            if not data:
                return
            yield data

    def _read_some(self) -> bytes:
        # A real descriptor is read with os.read, not through sys.stdin.buffer: after Ctrl-C
        # this thread is abandoned in the middle of a read, and a BufferedReader it held locked
        # would make the interpreter abort at exit.
        if self._fd is not None:
            return os.read(self._fd, CHUNK_BYTES)
        read1 = getattr(self._f, "read1", None)
        return read1(CHUNK_BYTES) if read1 is not None else self._f.read(CHUNK_BYTES)

    def close(self) -> None:
        if self.path is not None:
            self._f.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def produce(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic to write to.")],
    file: Annotated[Optional[Path], typer.Option(
        "-f", "--file", exists=True, dir_okay=False, readable=True,
        help="Read this file instead of stdin (with a progress bar on a terminal).")] = None,
    key: Annotated[Optional[str], typer.Option(
        "--key", help="Give every record this key.")] = None,
    key_separator: Annotated[Optional[str], typer.Option(
        "--key-separator", help="Split each line at the first SEP into key and value (lines "
                                "without it are skipped, with a warning).", metavar="SEP")] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Send the whole input as one record (binary files).")] = False,
    compression: Annotated[Optional[CompressionChoice], typer.Option(
        "--compression", case_sensitive=False,
        help="Compress batches with this (default: as the topic says).")] = None,
    linger: Annotated[Optional[str], typer.Option(
        "--linger", metavar="DURATION", help="How long a batch waits for more records, e.g. 10ms "
                                             "(default 0: send as soon as the partition is idle).")] = None,
    batch_size: Annotated[Optional[str], typer.Option(
        "--batch-size", metavar="SIZE", help="Bytes per batch, e.g. 64KiB (default 16KiB).")] = None,
    max_request_size: Annotated[Optional[str], typer.Option(
        "--max-request-size", metavar="SIZE",
        help="The largest record, and the most bytes per request (default 1MiB).")] = None,
    isolation: Annotated[Optional[str], typer.Option(
        "--isolation", metavar="LEVEL", help="read_uncommitted (acknowledged once the leader has "
                                             "them, default) or read_committed (once the in-sync replicas have them).")] = None,
    delivery_semantic: Annotated[str, typer.Option(
        "--delivery-semantic", metavar="SEMANTIC",
        help="at-least-once (retry failures; default) or at-most-once (send once).")] = "at-least-once",
    partition: Annotated[Optional[int], typer.Option(
        "-p", "--partition", min=0, help="Send every record to this partition (default: by key, "
                                         "round robin without one).")] = None,
    verbose: Annotated[bool, typer.Option(
        "-v", "--verbose", help="Print each record as it is sent.")] = False,
    stream: Annotated[Optional[str], typer.Option(
        "--stream", metavar="ID", help="Send the input as bounded stream ID, closed (EOS) at the "
                                       "end of the input; see docs/streams.md.")] = None,
) -> None:
    """Write records to a topic: one per line of stdin or of --file.

    A summary (records, bytes, time) is printed on stderr at the end.

    Example: seq 1000 | fluvial produce numbers --linger 5ms --compression lz4
    """
    if key is not None and key_separator is not None:
        usage_error("give --key or --key-separator, not both")
    if raw and key_separator is not None:
        usage_error("--raw sends the input as one record; it cannot be split with --key-separator")
    if key_separator is not None and not key_separator:
        usage_error("--key-separator must not be empty")
    config: dict[str, Any] = {
        "delivery": normalize_choice(delivery_semantic, DELIVERY_SEMANTICS, "--delivery-semantic"),
    }
    if isolation is not None:
        config["isolation"] = normalize_choice(isolation, ISOLATIONS, "--isolation")
    if compression is not None:
        config["compression"] = compression.value
    if linger is not None:
        config["linger"] = parse_duration(linger)
    if batch_size is not None:
        config["batch_size"] = parse_size(batch_size)
    if max_request_size is not None:
        config["max_request_size"] = parse_size(max_request_size)
    if partition is not None:
        config["partitioner"] = partition
    if stream is not None and (partition is not None or config["delivery"] != "at_least_once"):
        usage_error("--stream chooses its partition and delivers at least once (idempotently); "
                    "drop -p/--partition and --delivery-semantic")
    source = _Input(file)
    try:
        if stream is not None:
            from fluvial.cli.stream_cmd import produce_stream

            stats = run_client(ctx, lambda fl: produce_stream(
                fl, topic, stream, source, config, key=key.encode() if key is not None else None,
                separator=key_separator.encode() if key_separator is not None else None, raw=raw),
                topic=topic)
        else:
            stats = run_client(ctx, lambda fl: _produce(fl, topic, source, config, key=key,
                                                    separator=key_separator, raw=raw,
                                                    verbose=verbose, partition=partition),
                               topic=topic)
    finally:
        source.close()
    records, size, seconds, skipped = stats
    from fluvial.cli.output import print_note

    fast = seconds > 0 and records > 1 and not source.interactive
    rate = f", {records / seconds:,.0f} records/s" if fast else ""
    print_note(f"produced {records:,} record{'s' if records != 1 else ''} ({format_size(size)}) "
               f"to '{topic}' in {seconds:.2f}s{rate}"
               + (f"; skipped {skipped:,} line(s) without the separator" if skipped else ""))


async def _produce(fl: Any, topic: str, source: _Input, config: dict[str, Any], *,
                   key: Optional[str], separator: Optional[str], raw: bool, verbose: bool,
                   partition: Optional[int]) -> tuple[int, int, float, int]:
    """Send the input; returns (records, bytes, seconds, lines skipped)."""
    from fluvial.cli.output import print_warning, progress

    if partition is not None:
        await common.check_partitions(fl, topic, [partition])
    key_bytes = key.encode() if key is not None else None
    sep = separator.encode() if separator is not None else None
    counts = {"records": 0, "bytes": 0, "skipped": 0}
    started = time.monotonic()

    async def queue(producer: Any, lines: list[bytes]) -> None:
        batch, size, skipped = _records(lines, key_bytes, sep)
        if skipped:
            if counts["skipped"] < _MAX_SEPARATOR_WARNINGS:
                print_warning(f"{skipped} line(s) without the separator {separator!r} skipped")
            counts["skipped"] += skipped
        if batch:
            await producer.send_many(batch)
            counts["records"] += len(batch)
            counts["bytes"] += size
            if verbose:
                for r in batch:
                    _echo(*(r if type(r) is tuple else (None, r)))

    async with fl.producer(topic, **config) as producer:
        if raw:
            data = b"".join([chunk async for chunk in source.chunks()])
            await producer.send(data, key_bytes)
            counts["records"], counts["bytes"] = 1, len(data) + len(key_bytes or b"")
            if verbose:
                _echo(key_bytes, data)
        else:
            pending: list[bytes] = []
            bar = (progress(source.total, str(source.path)) if source.total
                   else contextlib.nullcontext(_NoBar()))  # no size known: no bar
            # aclosing: a record refused mid-input (content type, size) closes the reader too
            async with contextlib.aclosing(source.chunks()) as chunks:
                with bar as shown:
                    async for chunk in chunks:
                        shown.advance(len(chunk))
                        await queue(producer, split_lines(pending, chunk))
                        if source.interactive:
                            await producer.flush()
            if pending:  # the input did not end with a newline
                await queue(producer, [b"".join(pending)])
        await producer.flush()
    return counts["records"], counts["bytes"], time.monotonic() - started, counts["skipped"]


def _records(lines: list[bytes], key: Optional[bytes], sep: Optional[bytes]) -> tuple[list, int, int]:
    """(records for ``send_many``, their bytes, lines skipped for lacking the separator)."""
    if sep is not None:
        out = []
        size = skipped = 0
        for line in lines:
            k, found, v = line.partition(sep)
            if not found:
                skipped += 1
                continue
            out.append((k, v))
            size += len(k) + len(v)
        return out, size, skipped
    size = sum(map(len, lines))
    if key is not None:
        return [(key, line) for line in lines], size + len(key) * len(lines), 0
    return lines, size, 0


def _echo(key: Optional[bytes], value: bytes) -> None:
    text = value.decode("utf-8", "replace")
    sys.stdout.write(f"[{key.decode('utf-8', 'replace')}] {text}\n" if key is not None else text + "\n")
    sys.stdout.flush()


class _NoBar:
    def advance(self, amount: int) -> None:
        pass


def register(app: typer.Typer) -> None:
    app.command("produce")(produce)
