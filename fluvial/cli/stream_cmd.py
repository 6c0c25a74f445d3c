"""``--stream ID`` for ``fluvial produce`` and ``fluvial consume``: a bounded stream
(``fluvial.client.stream``, docs/streams.md) from stdin, or printed until its end.

* ``fluvial produce T --stream ID``: every line of the input is a record of stream ID; at the
  end of the input the stream is closed (EOS, once every record is acknowledged). An error or
  Ctrl-C aborts it instead.
* ``fluvial consume T --stream ID``: prints the stream's records and exits 0 at its EOS; an
  aborted or unreadable stream exits non-zero (``StreamIncomplete``, naming the last offset).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from fluvial.cli.produce import split_lines

__all__ = ["consume_stream", "produce_stream"]

_PRODUCER_OPTIONS = ("compression", "linger", "batch_size", "max_request_size", "isolation")


async def produce_stream(fl: Any, topic: str, stream: str, source: Any, config: dict[str, Any],
                         *, key: Optional[bytes], separator: Optional[bytes],
                         raw: bool) -> tuple[int, int, float, int]:
    """Send the input as stream ``stream``; returns (records, bytes, seconds, lines skipped)."""
    from fluvial.cli.produce import _records

    options = {k: v for k, v in config.items() if k in _PRODUCER_OPTIONS}
    records = size = skipped = 0
    started = time.monotonic()
    async with fl.sink(topic, stream=stream, **options) as sink:
        if raw:
            data = b"".join([chunk async for chunk in source.chunks()])
            await sink.send(data, key)
            records, size = 1, len(data) + len(key or b"")
        else:
            pending: list[bytes] = []
            async for chunk in source.chunks():
                batch, n, s = _records(split_lines(pending, chunk), key, separator)
                for r in batch:
                    k, v = r if type(r) is tuple else (None, r)
                    await sink.send(v, k)
                records, size, skipped = records + len(batch), size + n, skipped + s
            if pending:
                batch, n, s = _records([b"".join(pending)], key, separator)
                for r in batch:
                    k, v = r if type(r) is tuple else (None, r)
                    await sink.send(v, k)
                records, size, skipped = records + len(batch), size + n, skipped + s
    return records, size, time.monotonic() - started, skipped


async def consume_stream(fl: Any, topic: str, stream: str, formatter: Any,
                         config: dict[str, Any]) -> None:
    """Print stream ``stream`` until its EOS.

    Raises:
        StreamIncomplete: an abort, or the stream could not be read on.
    """
    out = sys.stdout.buffer
    options = {k: v for k, v in config.items() if k in ("max_bytes", "isolation", "offset")}
    async with fl.source(topic, stream=stream, **options) as source:
        async for rec in source:
            data = formatter.format([rec])
            if data:
                out.write(data)
                out.flush()
