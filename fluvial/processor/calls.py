"""The runtime's side of calls (``fl.call(NAME)``): a task beside the windows loop that answers
every complete call on the processor's calls topic, exactly once (the bookkeeping is
``fluvial.processor.call_state``; docs/processors.md, "Calling a processor").

    await serve_calls(fl, "upper", spec, partial(invoke, fn, shape))   # until cancelled

A call's outputs go to its reply stream only, never to the processor's output topics.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from fluvial.client.accumulator import DEFAULT_MAX_REQUEST_SIZE
from fluvial.client.stream import send_batch, stream_partition
from fluvial.client.types import Offset, Record
from fluvial.errors import FluvialError, Retriable, TopicAlreadyExistsError
from fluvial.processor.call_state import (
    CALLS_KEY, CALLS_RETENTION, Call, CallAssembler, CallsState, call_inputs, calls_topic,
    record_sets, replies_topic, reply_batches,
)
from fluvial.processor.windows import state_topic
from fluvial.protocol.producer_api import AllocateProducerIdRequest

log = logging.getLogger("fluvial.processor")

__all__ = ["ensure_call_topics", "partition_offsets", "serve_calls"]

# (inputs [(topic, records)], output topics) -> outputs [(topic, key, value, headers)]
CallFunction = Callable[[list, list], Awaitable[list]]


async def ensure_call_topics(fl: Any, name: str) -> tuple[str, str, int]:
    """Create processor ``name``'s calls and replies topics unless they exist (one partition,
    records kept ``CALLS_RETENTION``); returns ``(calls, replies, partitions)``.

    Raises:
        FluvialError: the topics cannot be created, or their partition counts differ.
    """
    topics = calls_topic(name), replies_topic(name)
    for t in topics:
        if t not in fl.metadata.topics:
            try:
                await fl.admin.create_topic(t, 1, 1, retention=CALLS_RETENTION)
            except TopicAlreadyExistsError:
                pass
        await fl.metadata.created(t)
    counts = [fl.metadata.partition_count(t) for t in topics]
    if counts[0] != counts[1]:
        raise FluvialError(detail=f"processor {name!r}: topics {topics[0]} and {topics[1]} must "
                                  f"have the same partition count, not {counts[0]} and {counts[1]}")
    return topics[0], topics[1], counts[0]


async def partition_offsets(fl: Any, topic: str, partition: int, timeout: float = 10.0) -> Any:
    """``fetch_partition_offsets``, retried while the partition's leader is not ready (a topic
    another client has just created)."""
    from fluvial.client.consumer import fetch_partition_offsets

    delay = 0.01
    with trio.fail_after(timeout):
        while True:
            try:
                return await fetch_partition_offsets(fl, topic, partition)
            except Retriable:
                await trio.sleep(delay)
                delay = min(delay * 2, 0.5)


class _Calls:
    def __init__(self, fl: Any, name: str, spec: Any, call_fn: CallFunction):
        self.fl = fl
        self.name = name
        self.spec = spec
        self.call_fn = call_fn
        self.state = CallsState()
        self.calls = self.replies = ""
        self.partitions = 0
        self._producer: Any = None
        self._lock = trio.Lock()

    async def open(self) -> None:
        self.calls, self.replies, self.partitions = await ensure_call_topics(self.fl, self.name)
        async with self.fl.consumer(state_topic(self.name), partition=0, offset=Offset.beginning(),
                                    continuous=False, isolation="read_committed") as c:
            async for rec in c:
                if rec.key == CALLS_KEY:
                    self.state = CallsState.from_json(json.loads(rec.value))
        self._producer = self.fl.producer(state_topic(self.name), linger=0, isolation="read_committed")
        await self._producer.__aenter__()
        if self.state.producer_id < 0:
            resp = await self.fl.sc_call(AllocateProducerIdRequest())
            if not resp.error_code.ok:
                raise resp.error_code.exception()
            await self.save(CallsState(resp.producer_id))

    async def save(self, state: CallsState) -> None:
        self.state = state
        fut = await self._producer.send(json.dumps(state.to_json()), key=CALLS_KEY)
        await fut

    async def serve_partition(self, p: int) -> None:
        progress = self.state.progress(p)
        assembler = CallAssembler(progress.answered)
        start = max(progress.next, (await partition_offsets(self.fl, self.calls, p)).start_offset)
        async with self.fl.consumer(self.calls, partition=p, offset=Offset.absolute(start),
                                    isolation="read_committed", markers=True) as consumer:
            async for rec in consumer:
                call = assembler.feed(rec)
                if call is None:
                    continue
                if stream_partition(call.id, self.partitions) != p:
                    log.warning("%s: call %r is in calls partition %d, not its own: ignored",
                                self.name, call.id, p)
                    continue
                await self.answer(p, call, assembler)

    async def answer(self, p: int, call: Call, assembler: CallAssembler) -> None:
        outputs, error = [], None
        try:
            inputs = call_inputs(call, self.spec.inputs, Record)
            results = await self.call_fn(inputs, list(self.spec.outputs))
            index = {t: i for i, t in enumerate(self.spec.outputs)}
            outputs = [(index[t], k, v, h) for t, k, v, h in results]
        except Exception as e:  # noqa: BLE001 - the function's failure goes to its caller
            error = traceback.format_exc()
            log.info("%s: call %s failed: %s", self.name, call.id, e)
        batches, records = reply_batches(call, outputs, error, producer_id=self.state.producer_id,
                                         first_sequence=self.state.progress(p).seq)
        for record_set in record_sets(batches, DEFAULT_MAX_REQUEST_SIZE):
            await send_batch(self.fl, self.replies, p, record_set, max_delay=1.0)
        async with self._lock:  # every snapshot holds every partition's latest progress
            await self.save(self.state.answered(p, call.eos, assembler.restart_offset(call.eos + 1),
                                                records))
        log.debug("%s: call %s answered (%d records)", self.name, call.id, records)

    async def aclose(self) -> None:
        if self._producer is not None:
            await self._producer.aclose()


async def serve_calls(fl: Any, name: str, spec: Any, call_fn: CallFunction) -> None:
    """Answer processor ``name``'s calls until cancelled; ``call_fn(inputs, outputs)`` invokes
    its function once (``fluvial.processor.runtime.invoke`` with the function bound).

    Raises:
        FluvialError: the cluster failed, or the calls topics are unusable.
    """
    calls = _Calls(fl, name, spec, call_fn)
    try:
        await calls.open()
        async with trio.open_nursery() as nursery:
            for p in range(calls.partitions):
                nursery.start_soon(calls.serve_partition, p)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await calls.aclose()
