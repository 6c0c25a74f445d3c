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
import collections
import inspect
import json
import logging
import os
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import trio

from fluvial.client.partitioner import key_hash
from fluvial.client.stream import send_batch
from fluvial.client.types import TOPIC_TO_BATCH_COMPRESSION, Offset, Record
from fluvial.errors import FluvialError, TopicAlreadyExistsError
from fluvial.processor.calls import serve_calls
from fluvial.processor.windows import (FENCE_KEY, FENCED, OWNED, STATE_KEY, ProcessorState, StateLog, Window, assign_outputs,
                                       fence_value, replayable, state_topic, tp)
from fluvial.protocol.batch import stamp_producer
from fluvial.protocol.content_type import check_value
from fluvial.protocol.processor_objects import FAILED, RUNNING, STOPPED, ProcessorStatus
from fluvial.protocol.producer_api import AllocateProducerIdRequest, next_sequence
from fluvial.protocol.record_headers import encode_headers_batch, normalize_headers
from fluvial.protocol.sc_objects import CompressionAlgorithm

log = logging.getLogger("fluvial.processor")

WINDOW_HEADER = "fluvial-processor-window"  # on every output: "<processor>:<window index>"
BATCH_RECORDS = 500  # an output partition's records per batch (deterministic split)
STATUS_INTERVAL = 1.0
REQUEST_REPLY, STREAMING = "request-reply", "streaming"
RIFF = "riff"  # the function runs behind a riff invoker (fluvial.processor.riff, --invoker)

__all__ = ["ProcessorFailed", "ProcessorFenced", "WindowSink", "WindowSource", "invoke", "load_function", "run_processor"]


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
    if shape == RIFF:
        return await fn(inputs, outputs)
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
    """One input partition's long-lived reader (one stream per input partition, not per window):
    ``pump`` buffers its data records (markers, which every offset may be, are read past and
    dropped) and signals each arrival; ``end`` is the offset after the last record read, so
    records up to it are available to plan; ``take(start, end)`` hands out those in [start, end)."""

    MAX_BUFFERED = 20_000  # records read ahead of the windows

    def __init__(self, consumer: Any, start: int):
        self.consumer = consumer
        self.records: collections.deque[Record] = collections.deque()
        self.end = start
        self._moved = trio.Event()  # a record read, or one taken

    async def pump(self, arrived: Callable[[], None]) -> None:
        async with self.consumer as consumer:
            async for rec in consumer:
                if rec.offset < self.end:
                    continue
                while len(self.records) >= self.MAX_BUFFERED:
                    await self._wait()
                if not rec.is_control:
                    self.records.append(rec)
                self.end = rec.offset + 1
                self._signal()
                arrived()

    def _signal(self) -> None:
        self._moved.set()
        self._moved = trio.Event()

    async def _wait(self) -> None:
        await self._moved.wait()

    async def take(self, start: int, end: int) -> list[Record]:
        out: list[Record] = []
        while True:
            while self.records and self.records[0].offset < end:
                rec = self.records.popleft()
                if rec.offset >= start:
                    out.append(rec)
            self._signal()
            if self.end >= end:
                return out
            await self._wait()


class ProcessorFenced(FluvialError):
    """Another runtime of the processor started (a newer epoch): this one stops."""


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
        self.feeds: dict[str, _Feed] = {}
        self.unsaved = False  # a commit kept in memory, not yet written
        self.dirty = trio.Event()  # set with ``unsaved``: wakes the committer
        self.write_lock = trio.StrictFIFOLock()  # one state write at a time (its sequence)
        self.deleted = trio.Event()
        self.fenced = trio.Event()
        self.log = StateLog()
        self.token = uuid.uuid4().hex
        self.state_seq = 0  # the next sequence of this runtime's epoch on the state partition
        self.arrived = trio.Event()  # an input record arrived (replaced once seen)
        self.watch_from = 0  # the state topic's offset after this runtime's fence

    # -- state ---------------------------------------------------------------------------

    def _state_consumer(self, offset: Any, continuous: bool) -> Any:
        return self.fl.consumer(self.state_topic, partition=0, offset=offset, continuous=continuous,
                                isolation="read_committed")

    async def claim(self) -> None:
        """Read the state and claim the processor: a fence at the epoch after every one seen,
        then the state topic read on until the first fence of that epoch or a newer one.

        Raises:
            ProcessorFenced: another runtime claimed the processor first.
        """
        try:
            await self.fl.admin.create_topic(self.state_topic, 1, 1, cleanup_policy="compact")
        except TopicAlreadyExistsError:
            pass
        end = 0
        async with self._state_consumer(Offset.beginning(), False) as c:
            async for rec in c:
                self.log.feed(rec.key, rec.value)
                end = rec.offset + 1
        pid = self.log.state.producer_id
        if pid < 0:
            resp = await self.fl.sc_call(AllocateProducerIdRequest())
            if not resp.error_code.ok:
                raise resp.error_code.exception()
            pid = resp.producer_id
        epoch = self.log.epoch + 1
        if epoch >= 1 << 15:
            raise ProcessorFailed(detail=f"the processor's producer epoch is exhausted ({epoch})")
        self.log.claim(epoch, self.token)
        self.state = ProcessorState(pid, epoch=epoch)
        await self._write_state(FENCE_KEY, fence_value(epoch, self.token, os.getpid(), socket.gethostname()))
        async with self._state_consumer(Offset.absolute(end), True) as c:
            async for rec in c:
                self.log.feed(rec.key, rec.value)
                self.watch_from = rec.offset + 1
                if self.log.verdict == FENCED:
                    raise self.fenced_error()
                if self.log.verdict == OWNED:
                    break
        # the last snapshot before the fence: no older runtime's write can land after it
        self.state = replace(self.log.state, producer_id=pid, epoch=epoch)
        if self.log.state.producer_id < 0:
            await self.save(self.state)
        self.status.windows_done = self.state.windows_done

    async def watch(self) -> None:
        """Read the state topic on after the claim: a newer runtime's fence sets ``fenced``."""
        async with self._state_consumer(Offset.absolute(self.watch_from), True) as c:
            async for rec in c:
                self.log.feed(rec.key, rec.value)
                if self.log.verdict == FENCED:
                    self.fenced.set()
                    return

    async def read_owner(self) -> None:
        """Read the state topic to its end (a write refused as fenced may come before the
        watcher has read the newer fence): ``log.owner`` is then the newest runtime."""
        if self.log.verdict != FENCED:
            async with self._state_consumer(Offset.absolute(self.watch_from), False) as c:
                async for rec in c:
                    self.log.feed(rec.key, rec.value)

    def fenced_error(self) -> ProcessorFenced:
        o = self.log.owner
        return ProcessorFenced(detail=f"processor {self.name} is run by another runtime (pid "
                                      f"{o.get('pid')} on {o.get('host')}, epoch {o.get('epoch')}): "
                                      f"this one (epoch {self.state.epoch}) stops")

    async def _write_state(self, key: bytes, value: bytes) -> None:
        """One record to the state topic, stamped with the processor's producer id at this
        runtime's epoch: refused once a newer runtime's fence is there."""
        async with self.write_lock:
            batch = encode_headers_batch([(key, value, ())], first_timestamp=int(time.time() * 1000))
            batch = stamp_producer(batch, self.state.producer_id, self.state.epoch, self.state_seq)
            try:
                await send_batch(self.fl, self.state_topic, 0, batch, max_delay=1.0)
            except FluvialError as e:
                if "fenced" in str(e):
                    self.fenced.set()
                    raise self.fenced_error() from None
                raise
            self.state_seq = next_sequence(self.state_seq, 1)

    async def save(self, state: ProcessorState, *, later: bool = False) -> None:
        """Write the snapshot and wait for its acknowledgement; ``later``: the committer writes
        it in the background (or the next plan does, whichever comes first)."""
        self.state = state
        self.unsaved = later
        if later:
            self.dirty.set()
        else:
            await self._write_state(STATE_KEY, json.dumps(state.to_json()).encode())

    async def committer(self) -> None:
        """Writes the latest commit, one write at a time: the commits made meanwhile go in the
        next one. (Off the windows' path: a run does not wait for its commit.)"""
        try:
            while True:
                await self.dirty.wait()
                self.dirty = trio.Event()
                await self.flush_state()
        except ProcessorFenced:
            self.fenced.set()

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

    def open_feeds(self, nursery: trio.Nursery) -> None:
        """One reader per input partition from where the state resumes (the pending run's start
        is the committed position)."""
        for part in self.order:
            topic, _, p = part.rpartition("/")
            start = self.state.start_of(part)
            consumer = self.fl.consumer(topic, partition=int(p), offset=Offset.absolute(start),
                                        isolation="read_committed", markers=True)
            feed = self.feeds[part] = _Feed(consumer, start)
            nursery.start_soon(feed.pump, self._arrived)

    def _arrived(self) -> None:
        self.arrived.set()

    # -- windows -------------------------------------------------------------------------

    async def next_run(self) -> tuple[Window, ...]:
        """The pending run (a replay), or the next one once due, planned and saved: every count
        window the inputs complete (a record arriving is the signal), or the time window
        closing now. (A run of count windows of one input partition is not saved: a replay
        plans it again identically, ``replayable``.)"""
        if self.state.pending:
            log.info("%s: replaying windows %d..%d", self.name, self.state.pending[0].index,
                     self.state.pending[-1].index)
            return self.state.pending
        spec = self.spec
        while True:
            if spec.window_count:
                self.arrived = trio.Event()
                ends = {part: feed.end for part, feed in self.feeds.items()}
                run = self.state.plan_counts(ends, spec.window_count, int(time.time() * 1000), self.order)
                if not run:
                    await self.arrived.wait()
                    continue
                if replayable(spec.window_count, self.order):
                    self.state = self.state.planned(run)
                    return run
            else:
                period = spec.window_ms / 1000
                await trio.sleep(period - (time.time() % period))
                w = self.state.plan_time(await self.high_watermarks(), int(time.time() * 1000), self.order)
                if w is None:
                    continue
                run = (w,)
            await self.save(self.state.planned(run))
            return run

    async def read_window(self, w: Window) -> list[tuple[str, list[Record]]]:
        per_topic: dict[str, list[Record]] = {t: [] for t in self.spec.inputs}
        for part in self.order:
            if part in w.ranges:
                topic = part.rpartition("/")[0]
                per_topic[topic] += await self.feeds[part].take(*w.ranges[part])
        return [(t, per_topic[t]) for t in self.spec.inputs]

    def check_outputs(self, outputs: list[tuple[str, bytes | None, bytes, tuple]], w: Window) -> None:
        for i, (topic, _, value, headers) in enumerate(outputs):
            ct = self.content_types.get(topic, "")
            if ct or headers:
                check_value(ct, value, headers, f"output {i} of window {w.index} to {topic}")

    def output_batches(self, state: ProcessorState, w: Window,
                       outputs: list[tuple[str, bytes | None, bytes, tuple]]
                       ) -> tuple[dict[str, list[bytes]], ProcessorState]:
        """A window's outputs as batches per output partition, stamped with the processor's
        producer id and the sequences ``state`` (the run's earlier windows committed) derives;
        and the state with this window committed too."""
        mark = (WINDOW_HEADER, f"{self.name}:{w.index}".encode())
        placed = assign_outputs([(t, k, v, (*h, mark)) for t, k, v, h in outputs], self.partitions, key_hash)
        batches: dict[str, list[bytes]] = {}
        for part, records in placed.items():
            topic = part.rpartition("/")[0]
            seq = state.seq.get(part, 0)
            for i in range(0, len(records), BATCH_RECORDS):
                chunk = records[i:i + BATCH_RECORDS]
                batch = encode_headers_batch(chunk, first_timestamp=w.timestamp,
                                             compression=self.compression[topic])
                batch = stamp_producer(batch, state.producer_id, 0, (seq + i) % (1 << 31))
                batches.setdefault(part, []).append(batch)
        return batches, state.committed(w, {part: len(records) for part, records in placed.items()})

    async def write_outputs(self, batches: dict[str, list[bytes]]) -> None:
        """Every output partition's batches in one request each, all partitions at once;
        returns once every one is acknowledged (retrying until then)."""
        async with trio.open_nursery() as nursery:
            for part, parts in batches.items():
                topic, _, p = part.rpartition("/")
                nursery.start_soon(self._produce, topic, int(p), b"".join(parts))

    async def _produce(self, topic: str, partition: int, batch: bytes) -> None:
        await send_batch(self.fl, topic, partition, batch, max_delay=1.0)

    async def run_window(self, fn: Callable, shape: str, w: Window
                         ) -> list[tuple[str, bytes | None, bytes, tuple]]:
        """A window's outputs: the function invoked on its records, retried with backoff; its
        input records for the dead-letter topic once it failed every attempt.

        Raises:
            ProcessorFailed: it failed every attempt and there is no dead-letter topic.
        """
        log.debug("%s: window %d %s", self.name, w.index, w.ranges)
        inputs = await self.read_window(w)
        log.debug("%s: window %d read", self.name, w.index)
        failures = 0
        while True:
            try:
                outputs = await invoke(fn, shape, inputs, list(self.spec.outputs))
                self.check_outputs(outputs, w)
                return outputs
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
                    return [(self.spec.dead_letter, r.key, r.value,
                             (("fluvial-processor-error", f"{type(e).__name__}: {e}".encode()),))
                            for _, records in inputs for r in records]
                await trio.sleep(min(0.1 * 2 ** (failures - 1), 5.0))

    async def run_windows(self, fn: Callable, shape: str, run: tuple[Window, ...]) -> None:
        """Invoke a run's windows in order, write all their outputs, then commit them. A window
        failing for good first writes and commits the windows before it."""
        state, batches = self.state, {}
        failed: ProcessorFailed | None = None
        done: list[Window] = []
        for w in run:
            try:
                outputs = await self.run_window(fn, shape, w)
            except ProcessorFailed as e:
                failed = e
                break
            window_batches, state = self.output_batches(state, w, outputs)
            for part, parts in window_batches.items():
                batches.setdefault(part, []).extend(parts)
            done.append(w)
        await self.write_outputs(batches)
        # after every output is acknowledged; written with the next run's plan
        await self.save(state, later=True)
        self.status.windows_done = self.state.windows_done
        if failed is not None:
            raise failed

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
            try:
                await self.high_watermarks()  # the lag
            except FluvialError as e:
                log.debug("%s: cannot read the inputs' watermarks: %s", self.name, e)
            if self.fenced.is_set():
                return
            await self.report(self.status)
            await trio.sleep(STATUS_INTERVAL)


async def run_processor(fl: Any, name: str) -> None:
    """Run processor ``name`` until cancelled or deleted (then its status says Stopped).

    Raises:
        ProcessorFailed: the function cannot be loaded, or a window failed every attempt
            (the status then says Failed, with the traceback).
        ProcessorFenced: another runtime of the processor started (it owns the status).
        FluvialError: no such processor, or the cluster failed.
    """
    meta = await fl.admin.describe_processor(name)
    rt = _Runtime(fl, name, meta.spec)
    try:
        if meta.spec.invoker:
            from fluvial.processor.riff import RiffFunction

            fn, shape = RiffFunction(meta.spec.invoker, fl.admin.content_type), RIFF
        else:
            fn, shape = load_function(meta.spec.function, meta.spec.path)
    except Exception as e:  # noqa: BLE001 - an import runs arbitrary code
        rt.status.state, rt.status.last_error = FAILED, traceback.format_exc()
        await rt.report(rt.status)
        what = meta.spec.invoker or meta.spec.function
        raise ProcessorFailed(detail=f"cannot load {what}: {type(e).__name__}: {e}") from e
    await rt.describe_topics()
    await rt.claim()
    failed: list[ProcessorFailed] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rt.watch)
            nursery.start_soon(rt.committer)
            rt.open_feeds(nursery)
            nursery.start_soon(rt.report_loop)

            async def windows() -> None:
                try:
                    while True:
                        run = await rt.next_run()
                        await rt.run_windows(fn, shape, run)
                except ProcessorFailed as e:
                    failed.append(e)
                except ProcessorFenced:
                    rt.fenced.set()
                nursery.cancel_scope.cancel()

            nursery.start_soon(windows)
            nursery.start_soon(serve_calls, fl, name, meta.spec, partial(invoke, fn, shape))  # fl.call
            with trio.CancelScope() as waiting:
                nursery.start_soon(_set_on, rt.fenced, waiting)
                await rt.deleted.wait()
            nursery.cancel_scope.cancel()
        if rt.fenced.is_set():
            with trio.move_on_after(5):
                await rt.read_owner()
            raise rt.fenced_error()
        if failed:
            rt.status.state = FAILED
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await rt.report(rt.status)
            raise failed[0]
    finally:
        if rt.status.state != FAILED and not rt.deleted.is_set() and not rt.fenced.is_set():
            rt.status.state, rt.status.pid = STOPPED, 0
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await rt.report(rt.status)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            if rt.log.verdict == OWNED and not rt.fenced.is_set():
                try:
                    await rt.flush_state()
                except ProcessorFenced:
                    pass
        if shape == RIFF:
            fn.close()


async def _set_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
