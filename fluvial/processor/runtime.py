"""The processor runtime: runs one processor's function on its windows, exactly once for a
deterministic function (the bookkeeping is ``fluvial.processor.windows``; docs/processors.md).

    async with fluvial.connect() as fl:
        await run_processor(fl, "avg")        # until cancelled, deleted, or Failed

Function shapes (``load_function``):

* request-reply: ``def f(value)`` or ``async def f(value)``; called once per input record with
  its value (bytes); the result is one output record on the first output (bytes and str as
  they are, anything else as JSON), None drops it.
* streaming: ``async def f(inputs, outputs)`` (two parameters): one ``WindowSource`` per input
  (``async for rec in inputs[0]``; ends with the window, its EOS) and one ``WindowSink`` per
  output (``await outputs[0].send(value, key=None, headers=None)``); the invocation must close
  its outputs (``await sink.aclose()``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from fluvial.client.partitioner import key_hash
from fluvial.client.stream import send_batch
from fluvial.client.types import TOPIC_TO_BATCH_COMPRESSION, Offset, Record
from fluvial.errors import FluvialError, TopicAlreadyExistsError
from fluvial.processor.calls import serve_calls
from fluvial.processor.windows import STATE_KEY, ProcessorState, Window, assign_outputs, state_topic, tp
from fluvial.protocol.batch import stamp_producer
from fluvial.protocol.content_type import check_value
from fluvial.protocol.processor_objects import FAILED, RUNNING, STOPPED, ProcessorStatus
from fluvial.protocol.producer_api import AllocateProducerIdRequest
from fluvial.protocol.record_headers import encode_headers_batch, normalize_headers
from fluvial.protocol.sc_objects import CompressionAlgorithm

log = logging.getLogger("fluvial.processor")

WINDOW_HEADER = "fluvial-processor-window"  # on every output: "<processor>:<window index>"
BATCH_RECORDS = 500  # an output partition's records per batch (deterministic split)
STATUS_INTERVAL = 1.0
REQUEST_REPLY, STREAMING = "request-reply", "streaming"

__all__ = ["ProcessorFailed", "WindowSink", "WindowSource", "invoke", "load_function", "run_processor"]


class ProcessorFailed(FluvialError):
    """The processor cannot go on: its function could not be loaded, or a window failed every
    attempt (without a dead-letter topic). The status says Failed with the traceback."""


# ----------------------------------------------------------------------------- the function


def load_function(function: str, path: str = "") -> tuple[Callable, str]:
    """``(callable, shape)`` for ``MODULE:NAME``, importing with ``path`` first on sys.path.

    Raises:
        ImportError, AttributeError: the module or the name is not there (or fails to import).
        TypeError: not a function of a known shape.
    """
    module_name, _, attr = function.partition(":")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    importlib.invalidate_caches()
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{function} is not callable")
    params = [p for p in inspect.signature(obj).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) == 2 and inspect.iscoroutinefunction(obj):
        return obj, STREAMING
    if len(params) == 1:
        return obj, REQUEST_REPLY
    raise TypeError(f"{function}: expected f(value) (request-reply) or async f(inputs, outputs) "
                    f"(streaming), got {len(params)} parameter(s)")


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


class WindowSource:
    """One input of a window, for a streaming function: ``async for rec in source`` gives its
    records (``Record``) and ends at the window's end (its EOS)."""

    def __init__(self, topic: str, records: list[Record]):
        self.topic = topic
        self._records = records
        self._i = 0

    def __aiter__(self) -> WindowSource:
        return self

    async def __anext__(self) -> Record:
        await trio.lowlevel.checkpoint()
        if self._i >= len(self._records):
            raise StopAsyncIteration
        self._i += 1
        return self._records[self._i - 1]


class WindowSink:
    """One output of a window, for a streaming function: ``await sink.send(value, key=None,
    headers=None)``, then ``await sink.aclose()``. Records are written when the invocation
    returns, all of them or (on a failure) none."""

    def __init__(self, topic: str):
        self.topic = topic
        self.records: list[tuple[bytes | None, bytes, tuple]] = []
        self.closed = False

    async def send(self, value: Any, key: bytes | str | None = None, headers: Any = None) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise RuntimeError(f"output {self.topic!r} is closed")
        k = None if key is None else _as_bytes(key)
        self.records.append((k, _as_bytes(value), normalize_headers(headers) if headers else ()))

    async def aclose(self) -> None:
        self.closed = True


async def invoke(fn: Callable, shape: str, inputs: list[tuple[str, list[Record]]],
                 outputs: list[str]) -> list[tuple[str, bytes | None, bytes, tuple]]:
    """Run ``fn`` on one window; returns its outputs ``(topic, key, value, headers)`` in order.
    Raises what the function raises; RuntimeError when a streaming one leaves an output open."""
    if shape == REQUEST_REPLY:
        out = []
        for _, records in inputs:
            for rec in records:
                result = fn(rec.value)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    out.append((outputs[0], None, _as_bytes(result), ()))
        return out
    sources = [WindowSource(t, records) for t, records in inputs]
    sinks = [WindowSink(t) for t in outputs]
    await fn(sources, sinks)
    open_ = [s.topic for s in sinks if not s.closed]
    if open_:
        raise RuntimeError(f"the function returned without closing its output(s) {', '.join(open_)}")
    return [(s.topic, k, v, h) for s in sinks for k, v, h in s.records]


# ------------------------------------------------------------------------------ the runtime


class _Feed:
    """Reads one input partition window after window: ``take(start, end)`` returns the data
    records in [start, end) (markers, which every offset may be, are read past and dropped)."""

    def __init__(self, consumer: Any):
        self.consumer = consumer
        self.held: Record | None = None
        self.opened = False

    async def take(self, start: int, end: int) -> list[Record]:
        if not self.opened:
            await self.consumer.__aenter__()
            self.opened = True
        out: list[Record] = []
        while True:
            rec, self.held = self.held or await self.consumer.__anext__(), None
            if rec.offset < start:
                continue
            if rec.offset >= end:
                self.held = rec
                return out
            if not rec.is_control:
                out.append(rec)
            if rec.offset == end - 1:
                return out

    async def aclose(self) -> None:
        if self.opened:
            await self.consumer.aclose()


class _Runtime:
    def __init__(self, fl: Any, name: str, spec: Any):
        self.fl = fl
        self.name = name
        self.spec = spec
        self.state_topic = state_topic(name)
        self.state = ProcessorState()
        self.status = ProcessorStatus(RUNNING, 0, "", os.getpid(), socket.gethostname(), {})
        self.order: list[str] = []  # input partitions, in input order
        self.partitions: dict[str, int] = {}  # output topic -> partition count
        self.content_types: dict[str, str] = {}
        self.compression: dict[str, int] = {}
        self.ends: dict[str, int] = {}
        self._state_producer: Any = None
        self.feeds: dict[str, _Feed] = {}
        self.unsaved = False  # a commit kept in memory, not yet written
        self.deleted = trio.Event()

    # -- state ---------------------------------------------------------------------------

    async def open_state(self) -> None:
        try:
            await self.fl.admin.create_topic(self.state_topic, 1, 1, cleanup_policy="compact")
        except TopicAlreadyExistsError:
            pass
        async with self.fl.consumer(self.state_topic, partition=0, offset=Offset.beginning(),
                                    continuous=False, isolation="read_committed") as c:
            async for rec in c:
                if rec.key == STATE_KEY:
                    self.state = ProcessorState.from_json(json.loads(rec.value))
        self._state_producer = self.fl.producer(self.state_topic, linger=0,
                                                isolation="read_committed")
        await self._state_producer.__aenter__()
        if self.state.producer_id < 0:
            resp = await self.fl.sc_call(AllocateProducerIdRequest())
            if not resp.error_code.ok:
                raise resp.error_code.exception()
            await self.save(ProcessorState(resp.producer_id))
        self.status.windows_done = self.state.windows_done

    async def save(self, state: ProcessorState, *, later: bool = False) -> None:
        """Write the snapshot and wait for its acknowledgement; ``later``: keep it in memory
        only, written with the next plan (one write per window) or before the runtime waits."""
        self.state = state
        self.unsaved = later
        if not later:
            fut = await self._state_producer.send(json.dumps(state.to_json()), key=STATE_KEY)
            await fut

    async def flush_state(self) -> None:
        if self.unsaved:
            await self.save(self.state)

    # -- topics --------------------------------------------------------------------------

    async def describe_topics(self) -> None:
        md = self.fl.metadata
        for topic in [*self.spec.inputs, *self.spec.outputs, *filter(None, [self.spec.dead_letter])]:
            await md.topic(topic)
            await md.partition(topic, 0)
        self.order = [tp(t, p) for t in self.spec.inputs for p in range(md.partition_count(t))]
        for t in [*self.spec.outputs, *filter(None, [self.spec.dead_letter])]:
            self.partitions[t] = md.partition_count(t)
            self.content_types[t] = await self.fl.admin.content_type(t)
            algo = (await md.topic(t)).spec.compression_type
            self.compression[t] = 0 if algo == CompressionAlgorithm.Any else int(TOPIC_TO_BATCH_COMPRESSION[algo])

    async def high_watermarks(self) -> dict[str, int]:
        from fluvial.client.consumer import fetch_partition_offsets

        ends = {}
        for part in self.order:
            topic, _, p = part.rpartition("/")
            ends[part] = (await fetch_partition_offsets(self.fl, topic, int(p))).last_stable_offset
        self.ends = ends
        self.status.lag = {p: max(0, ends[p] - self.state.start_of(p)) for p in self.order}
        return ends

    # -- windows -------------------------------------------------------------------------

    async def next_window(self) -> Window:
        """The pending window (a replay), or the next one once it is due, planned and saved."""
        if self.state.pending is not None:
            log.info("%s: replaying window %d", self.name, self.state.pending.index)
            return self.state.pending
        spec = self.spec
        while True:
            if spec.window_count:
                w = self.state.plan_count(await self.high_watermarks(), spec.window_count,
                                          int(time.time() * 1000), self.order)
                if w is None:
                    await self.flush_state()
                    await trio.sleep(0.005)  # polling the watermarks: no push from the SPU here
                    continue
            else:
                period = spec.window_ms / 1000
                await self.flush_state()
                await trio.sleep(period - (time.time() % period))
                w = self.state.plan_time(await self.high_watermarks(), int(time.time() * 1000), self.order)
                if w is None:
                    continue
            await self.save(self.state.planned(w))
            return w

    async def read_window(self, w: Window) -> list[tuple[str, list[Record]]]:
        per_topic: dict[str, list[Record]] = {t: [] for t in self.spec.inputs}
        for part in self.order:
            if part in w.ranges:
                topic = part.rpartition("/")[0]
                per_topic[topic] += await self._feed(part, w.ranges[part][0]).take(*w.ranges[part])
        return [(t, per_topic[t]) for t in self.spec.inputs]

    def _feed(self, part: str, start: int) -> _Feed:
        """The partition's long-lived reader (one stream per input partition, not per window)."""
        feed = self.feeds.get(part)
        if feed is None:
            topic, _, p = part.rpartition("/")
            consumer = self.fl.consumer(topic, partition=int(p), offset=Offset.absolute(start),
                                        isolation="read_committed", markers=True)
            feed = self.feeds[part] = _Feed(consumer)
        return feed

    def check_outputs(self, outputs: list[tuple[str, bytes | None, bytes, tuple]], w: Window) -> None:
        for i, (topic, _, value, headers) in enumerate(outputs):
            ct = self.content_types.get(topic, "")
            if ct or headers:
                check_value(ct, value, headers, f"output {i} of window {w.index} to {topic}")

    async def write_outputs(self, w: Window, outputs: list[tuple[str, bytes | None, bytes, tuple]]
                            ) -> dict[str, int]:
        """Write a window's outputs with the processor's producer id and the sequences the
        window derives; returns the records per output partition. Retries until acknowledged."""
        mark = (WINDOW_HEADER, f"{self.name}:{w.index}".encode())
        placed = assign_outputs([(t, k, v, (*h, mark)) for t, k, v, h in outputs], self.partitions, key_hash)
        for part, records in placed.items():
            topic, _, p = part.rpartition("/")
            seq = self.state.seq.get(part, 0)
            for i in range(0, len(records), BATCH_RECORDS):
                chunk = records[i:i + BATCH_RECORDS]
                batch = encode_headers_batch(chunk, first_timestamp=w.timestamp,
                                             compression=self.compression[topic])
                batch = stamp_producer(batch, self.state.producer_id, 0, (seq + i) % (1 << 31))
                await self._produce(topic, int(p), batch)
        return {part: len(records) for part, records in placed.items()}

    async def _produce(self, topic: str, partition: int, batch: bytes) -> None:
        await send_batch(self.fl, topic, partition, batch, max_delay=1.0)

    async def run_window(self, fn: Callable, shape: str, w: Window) -> None:
        log.debug("%s: window %d %s", self.name, w.index, w.ranges)
        inputs = await self.read_window(w)
        log.debug("%s: window %d read", self.name, w.index)
        failures = 0
        while True:
            try:
                outputs = await invoke(fn, shape, inputs, list(self.spec.outputs))
                self.check_outputs(outputs, w)
                break
            except Exception as e:  # noqa: BLE001 - the function's failure, whatever it is
                failures += 1
                tb = traceback.format_exc()
                self.status.last_error = tb
                log.warning("%s: window %d failed (%d of %d): %s", self.name, w.index, failures,
                            self.spec.max_failures, e)
                if failures >= self.spec.max_failures:
                    if not self.spec.dead_letter:
                        raise ProcessorFailed(detail=f"window {w.index} failed {failures} times: "
                                                     f"{type(e).__name__}: {e}") from e
                    outputs = [(self.spec.dead_letter, r.key, r.value,
                                (("fluvial-processor-error", f"{type(e).__name__}: {e}".encode()),))
                               for _, records in inputs for r in records]
                    break
                await trio.sleep(min(0.1 * 2 ** (failures - 1), 5.0))
        counts = await self.write_outputs(w, outputs)
        # after every output is acknowledged; written with the next window's plan
        await self.save(self.state.committed(w, counts), later=True)
        self.status.windows_done = self.state.windows_done

    # -- status --------------------------------------------------------------------------

    async def report(self, status: ProcessorStatus) -> None:
        try:
            await self.fl.admin.set_processor_status(self.name, status)
        except FluvialError as e:
            if "not found" in str(e):
                log.warning("%s: the processor was deleted: stopping", self.name)
                self.deleted.set()
            else:
                log.debug("%s: status report failed: %s", self.name, e)

    async def report_loop(self) -> None:
        while True:
            await self.report(self.status)
            await trio.sleep(STATUS_INTERVAL)


async def run_processor(fl: Any, name: str) -> None:
    """Run processor ``name`` until cancelled or deleted (then its status says Stopped).

    Raises:
        ProcessorFailed: the function cannot be loaded, or a window failed every attempt
            (the status then says Failed, with the traceback).
        FluvialError: no such processor, or the cluster failed.
    """
    meta = await fl.admin.describe_processor(name)
    rt = _Runtime(fl, name, meta.spec)
    try:
        fn, shape = load_function(meta.spec.function, meta.spec.path)
    except Exception as e:  # noqa: BLE001 - an import runs arbitrary code
        rt.status.state, rt.status.last_error = FAILED, traceback.format_exc()
        await rt.report(rt.status)
        raise ProcessorFailed(detail=f"cannot load {meta.spec.function}: {type(e).__name__}: {e}") from e
    await rt.describe_topics()
    await rt.open_state()
    failed: list[ProcessorFailed] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rt.report_loop)

            async def windows() -> None:
                try:
                    while True:
                        w = await rt.next_window()
                        await rt.run_window(fn, shape, w)
                except ProcessorFailed as e:
                    failed.append(e)
                nursery.cancel_scope.cancel()

            nursery.start_soon(windows)
            nursery.start_soon(serve_calls, fl, name, meta.spec, partial(invoke, fn, shape))  # fl.call
            await rt.deleted.wait()
            nursery.cancel_scope.cancel()
        if failed:
            rt.status.state = FAILED
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await rt.report(rt.status)
            raise failed[0]
    finally:
        if rt.status.state != FAILED and not rt.deleted.is_set():
            rt.status.state, rt.status.pid = STOPPED, 0
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await rt.report(rt.status)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            if rt._state_producer is not None and not failed:
                await rt.flush_state()
            for feed in rt.feeds.values():
                await feed.aclose()
            if rt._state_producer is not None:
                await rt._state_producer.aclose()
