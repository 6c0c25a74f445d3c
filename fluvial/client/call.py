"""Calling a processor: one invocation of its function, like an RPC handler that receives a
source and returns a sink (docs/processors.md, "Calling a processor").

    async with fl.call("upper") as (sink, source):
        await sink.send(b"a")
        await sink.send(b"b", input=0)         # which input of the function (default 0)
        await sink.aclose()                    # the call's input ends (EOS)
        async for rec in source:               # its outputs, until the reply's EOS
            print(rec.value)

The call is a bounded stream (``fluvial.client.stream``) on the processor's calls topic, with a
fresh call id as its stream id; the runtime answers it with a bounded stream of the same id on
the replies topic (``fluvial.processor.call_state`` has the layout and the exactly-once
bookkeeping). Iterating the source first closes the sink if it is still open. Leaving the block
with an exception withdraws the call (ABORT) unless its input had ended.

Errors: ``ProcessorCallError`` for no such processor, a function that raised (``remote_error``
holds its traceback) and no complete reply within ``timeout`` seconds of the input's end (a
processor whose runtime is not running: the call waits for it that long). It is a
``StreamIncomplete``: the reply did not end with its EOS.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import trio

from fluvial.client.stream import Sink, Source, StreamIncomplete, stream_partition
from fluvial.client.types import Offset, Record
from fluvial.errors import Error, FluvialError
from fluvial.processor.call_state import ERROR_HEADER, INPUT_HEADER
from fluvial.processor.calls import ensure_call_topics, partition_offsets
from fluvial.protocol.record_headers import normalize_headers

__all__ = ["Call", "CallSink", "CallSource", "ProcessorCallError"]

DEFAULT_CALL_TIMEOUT = 60.0


class ProcessorCallError(StreamIncomplete):
    """A call got no complete reply: no such processor, the function raised (``remote_error``
    is its traceback, as the runtime formatted it), or no reply within the call's timeout."""

    def __init__(self, detail: str, last_offset: int | None = None, remote_error: str | None = None):
        FluvialError.__init__(self, Error.other(detail), detail)
        self.last_offset = last_offset
        self.remote_error = remote_error


class CallSink:
    """The call's input: ``await sink.send(value, key=None, headers=None, input=0)``, then
    ``await sink.aclose()`` (EOS: the runtime invokes the function)."""

    def __init__(self, sink: Sink, inputs: list[str]):
        self._sink = sink
        self.inputs = inputs

    @property
    def call_id(self) -> str:
        return self._sink.stream

    @property
    def open(self) -> bool:
        return self._sink._state.state == "open"

    async def send(self, value: bytes | str, key: bytes | str | None = None, headers: Any = None,
                   *, input: int = 0) -> Any:  # noqa: A002 - riff's argIndex, by its role's name
        """Queue a record for the function's input ``input``; returns its ``ProduceFuture``.

        Raises:
            ValueError: the function has no such input.
            SinkClosed: the call's input has ended.
        """
        if not 0 <= input < len(self.inputs):
            raise ValueError(f"input {input}: the processor's function has {len(self.inputs)} "
                             f"input(s) ({', '.join(self.inputs)})")
        hs = normalize_headers(headers)
        if input:
            hs += ((INPUT_HEADER, str(input).encode()),)
        return await self._sink.send(value, key, hs)

    async def aclose(self) -> None:
        """End the call's input: once every record is acknowledged, its EOS."""
        await self._sink.aclose()


class CallSource:
    """The call's outputs: ``async for rec in source`` until the reply's EOS. Each record has
    the header ``fluvial-call-output`` (the function's output index, as text).

    Raises (from the iteration):
        ProcessorCallError: the function raised, or no complete reply within the timeout.
        StreamIncomplete: the reply was aborted otherwise.
    """

    def __init__(self, name: str, source: Source, sink: CallSink, timeout: float | None):
        self.name = name
        self._source = source
        self._sink = sink
        self.timeout = timeout
        self._deadline: float | None = None

    def __aiter__(self) -> CallSource:
        return self

    async def __anext__(self) -> Record:
        if self._sink.open:
            await self._sink.aclose()
        if self._deadline is None:
            self._deadline = trio.current_time() + (math.inf if self.timeout is None else self.timeout)
        rec = None
        with trio.move_on_at(self._deadline):
            rec = await self._source.__anext__()
        if rec is None:
            await self._source.aclose()
            raise ProcessorCallError(
                f"processor {self.name!r}: call {self._sink.call_id} got no complete reply within "
                f"{self.timeout} s (is its runtime running? `fluvial processor describe "
                f"{self.name}`)", self._source.last_offset)
        error = dict(rec.headers).get(ERROR_HEADER)
        if error is not None:
            await self._source.aclose()
            raise ProcessorCallError(f"processor {self.name!r}: call {self._sink.call_id} failed: "
                                     f"{error.decode(errors='replace')}", rec.offset,
                                     rec.value.decode(errors="replace"))
        return rec

    async def aclose(self) -> None:
        await self._source.aclose()


class Call:
    """``async with fl.call(NAME) as (sink, source)``; see the module docstring.

    Args:
        timeout: seconds from the end of the call's input to the end of its reply (None: wait
            for ever); default 60.
        call_id: the call's id (default: a fresh UUID); a call id must not be reused.
        sink options (``session_timeout``, ``max_unacked_bytes``, ...) are passed on.
    """

    def __init__(self, fl: Any, name: str, *, timeout: float | None = DEFAULT_CALL_TIMEOUT,
                 call_id: str | None = None, **sink_options: Any):
        self._fl = fl
        self.name = name
        self.timeout = timeout
        self.call_id = call_id or uuid.uuid4().hex
        self._sink_options = sink_options
        self.sink: CallSink | None = None
        self.source: CallSource | None = None

    async def __aenter__(self) -> tuple[CallSink, CallSource]:
        fl = self._fl
        try:
            meta = await fl.admin.describe_processor(self.name)
        except FluvialError as e:
            if "not found" in str(e):
                raise ProcessorCallError(f"cannot call processor {self.name!r}: there is no "
                                         f"processor of that name (`fluvial processor list`)") from None
            raise
        calls, replies, partitions = await ensure_call_topics(fl, self.name)
        # the reply comes after the call: read the replies partition from its end as of now
        p = stream_partition(self.call_id, partitions)
        start = (await partition_offsets(fl, replies, p)).last_stable_offset
        self.sink = CallSink(Sink(fl, calls, self.call_id, **self._sink_options), list(meta.spec.inputs))
        await self.sink._sink.__aenter__()
        self.source = CallSource(self.name, Source(fl, replies, self.call_id, offset=Offset.absolute(start)),
                                 self.sink, self.timeout)
        return self.sink, self.source

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            await self.sink._sink.__aexit__(exc_type, exc, tb)
        finally:
            await self.source.aclose()
