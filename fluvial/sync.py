"""The blocking client: the same names as the async one, for scripts and notebooks.

    import fluvial.sync as fluvial

    with fluvial.connect() as fl:
        fl.admin.create_topic("greetings")
        with fl.producer("greetings") as p:
            p.send(b"hello").wait()
        for record in fl.consumer("greetings", continuous=False):
            print(record.offset, record.value)

How it works: each ``connect()`` starts a trio event loop in a daemon thread and runs the async
client (``fluvial.client``) there; every blocking call hands one coroutine to that loop with
``trio.from_thread.run`` and waits for its result. The loop has its own thread, so this works
where an event loop already runs in the caller's thread (Jupyter). Each call costs a thread
hand-off (tens of microseconds): for bulk work use ``send_many`` and iterate consumers (which
fetch records a response at a time).

Resource handling: ``close()`` (or leaving ``with``) flushes producers, closes consumers, closes
the connection and stops the thread. A connection that is never closed is stopped when the
interpreter exits.
"""

from __future__ import annotations

import atexit
import functools
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import trio

from fluvial.client import admin as _admin
from fluvial.client.consumer import Consumer as _AsyncConsumer
from fluvial.client.fluvial import Fluvial as _AsyncFluvial
from fluvial.client.fluvial import connect as _async_connect
from fluvial.client.producer import ProduceFuture, Producer as _AsyncProducer
from fluvial.client.types import (
    Compression, ConsumerOffsetInfo, DeliverySemantic, Isolation, Offset, PartitionInfo, Record,
    RecordMetadata, SpuInfo, TopicInfo,
)
from fluvial.errors import FluvialError

__all__ = [
    "Admin", "Call", "CallSink", "Compression", "Consumer", "ConsumerOffsetInfo",
    "DeliverySemantic", "Fluvial", "Isolation", "Offset", "PartitionInfo", "ProduceOutput", "Producer", "Record",
    "RecordMetadata", "SpuInfo", "TopicInfo", "connect",
]


class _Portal:
    """A trio loop in a daemon thread, and the way into it."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="fluvial-sync", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # noqa: BLE001 - reported to the thread that waits
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._stop is not None and not self._stop.is_set()

    def run(self, afn, *args, **kwargs) -> Any:
        """Run ``await afn(*args, **kwargs)`` in the loop; return or raise its outcome."""
        if not self.alive:
            raise FluvialError(detail="this fluvial.sync connection is closed")
        return trio.from_thread.run(functools.partial(afn, *args, **kwargs), trio_token=self._token)

    def start(self, afn, *args) -> Any:
        """``nursery.start(afn, *args)`` in the loop's root nursery (for long-lived tasks)."""
        return self.run(self._nursery.start, functools.partial(afn, *args))

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout=30)


# ------------------------------------------------------------------------------ producer


class ProduceOutput:
    """The outcome of a blocking ``send``: ``wait()`` returns the ``RecordMetadata``."""

    __slots__ = ("_portal", "_future")

    def __init__(self, portal: _Portal, future: ProduceFuture):
        self._portal = portal
        self._future = future

    def __repr__(self) -> str:
        return f"<ProduceOutput {'done' if self.done() else 'pending'}>"

    def done(self) -> bool:
        return self._future.done()

    def wait(self) -> RecordMetadata:
        """Block until the record is acknowledged; raises the error that failed it."""
        if self._future.done():
            return self._future.result()
        return self._portal.run(self._future.wait)

    def result(self) -> RecordMetadata:
        """The metadata without waiting (``RuntimeError`` if not acknowledged yet)."""
        return self._future.result()


class Producer:
    """Blocking twin of ``fluvial.client.producer.Producer`` (same options)."""

    def __init__(self, portal: _Portal, producer: _AsyncProducer):
        self._portal = portal
        self._producer = producer

    def __repr__(self) -> str:
        return f"<sync {self._producer!r}>"

    @property
    def topic(self) -> str:
        return self._producer.topic

    def __enter__(self) -> Producer:
        self._portal.run(self._producer._ensure_started)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._portal.run(self._producer.__aexit__, exc_type, exc, tb)

    def send(self, value: bytes | str, key: bytes | str | None = None,
             headers: Any = None) -> ProduceOutput:
        """Queue a record; ``.wait()`` on the result gives its ``RecordMetadata``."""
        return ProduceOutput(self._portal, self._portal.run(self._producer.send, value, key,
                                                            headers))

    def send_many(self, records: Iterable[Any]) -> list[ProduceOutput]:
        """Queue values or ``(key, value)`` pairs in one hand-off."""
        futures = self._portal.run(self._producer.send_many, list(records))
        return [ProduceOutput(self._portal, f) for f in futures]

    def flush(self) -> None:
        self._portal.run(self._producer.flush)

    def close(self) -> None:
        """Flush and close."""
        self._portal.run(self._producer.aclose)


# ------------------------------------------------------------------------------- streams


class Sink:
    """Blocking twin of ``fluvial.client.stream.Sink``: ``with fl.sink(topic, stream=ID) as
    sink: sink.send(...)``; leaving the block writes EOS once every record is acknowledged, an
    exception writes an abort marker instead."""

    def __init__(self, portal: _Portal, sink: Any):
        self._portal = portal
        self._sink = sink

    def __enter__(self) -> Sink:
        self._portal.run(self._sink.__aenter__)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._portal.run(self._sink.__aexit__, exc_type, exc, tb)

    def send(self, value: bytes | str, key: bytes | str | None = None,
             headers: Any = None) -> ProduceOutput:
        return ProduceOutput(self._portal, self._portal.run(self._sink.send, value, key, headers))

    def close(self) -> None:
        """Write EOS once every record is acknowledged."""
        self._portal.run(self._sink.aclose)


class Source:
    """Blocking twin of ``fluvial.client.stream.Source``: ``for rec in fl.source(topic,
    stream=ID)`` ends at the stream's EOS, or raises ``StreamIncomplete``."""

    def __init__(self, portal: _Portal, source: Any):
        self._portal = portal
        self._source = source

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> Record:
        try:
            return self._portal.run(self._source.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        if self._portal.alive:
            self._portal.run(self._source.aclose)


class CallSink(Sink):
    """Blocking twin of ``fluvial.client.call.CallSink``: ``sink.send(value, input=0)``, then
    ``sink.close()`` ends the call's input."""

    def send(self, value: bytes | str, key: bytes | str | None = None, headers: Any = None, *,
             input: int = 0) -> ProduceOutput:  # noqa: A002 - as the async CallSink
        return ProduceOutput(self._portal, self._portal.run(self._sink.send, value, key, headers,
                                                            input=input))


class Call:
    """Blocking twin of ``fluvial.client.call.Call``: ``with fl.call(NAME) as (sink, source):``
    (docs/processors.md, "Calling a processor")."""

    def __init__(self, portal: _Portal, call: Any):
        self._portal = portal
        self._call = call

    def __enter__(self) -> tuple[CallSink, Source]:
        sink, source = self._portal.run(self._call.__aenter__)
        return CallSink(self._portal, sink), Source(self._portal, source)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._portal.run(self._call.__aexit__, exc_type, exc, tb)


# ------------------------------------------------------------------------------ consumer


class Consumer:
    """Blocking twin of ``fluvial.client.consumer.Consumer``: iterate it with ``for``."""

    def __init__(self, portal: _Portal, consumer: _AsyncConsumer):
        self._portal = portal
        self._consumer = consumer
        self._buf: list[Record] = []
        self._i = 0

    def __repr__(self) -> str:
        return f"<sync {self._consumer!r}>"

    def __enter__(self) -> Consumer:
        self._portal.run(self._consumer._ensure_started)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __iter__(self) -> Consumer:
        return self

    def __next__(self) -> Record:
        i = self._i
        if i < len(self._buf):
            self._i = i + 1
            return self._buf[i]
        batch = self._portal.run(self._consumer.receive_many)
        if not batch:
            raise StopIteration
        self._buf, self._i = batch, 1
        return batch[0]

    def receive_many(self) -> list[Record]:
        """The records available now (waiting for at least one); ``[]`` at the end."""
        if self._i < len(self._buf):
            out = self._buf[self._i:]
            self._i = len(self._buf)
            return out
        batch = self._portal.run(self._consumer.receive_many)
        self._buf, self._i = batch, len(batch)
        return batch

    def commit(self) -> None:
        """Mark the last record returned by each partition as consumed."""
        self._portal.run(_commit, self._consumer, self._buf, self._i)

    def flush(self) -> None:
        """Store the committed offsets."""
        self._portal.run(self._consumer.flush)

    def close(self) -> None:
        if self._portal.alive:
            self._portal.run(_close, self._consumer, self._buf, self._i)

    @property
    def partitions(self) -> list[int]:
        return self._consumer.partitions


def _sync_position(consumer: _AsyncConsumer, buf: list[Record], i: int) -> None:
    """The blocking iterator hands out the async consumer's lists itself: tell the consumer how
    far the caller really got in the current one (runs in the loop's thread)."""
    if buf and consumer._buf is buf:
        consumer._i = i


async def _commit(consumer: _AsyncConsumer, buf: list[Record], i: int) -> None:
    _sync_position(consumer, buf, i)
    done = consumer.commit()
    if done is not None:  # a group member commits to its coordinator (fluvial.client.group)
        await done


async def _close(consumer: _AsyncConsumer, buf: list[Record], i: int) -> None:
    _sync_position(consumer, buf, i)
    await consumer.aclose()


# ------------------------------------------------------------------------------ admin


class Admin:
    """Blocking twin of ``fluvial.client.admin.Admin``: the same methods, returning results."""

    def __init__(self, portal: _Portal, admin: _admin.Admin):
        self._portal = portal
        self._admin = admin


def _blocking(name: str):
    afn = getattr(_admin.Admin, name)

    @functools.wraps(afn)
    def method(self: Admin, *args, **kwargs):
        return self._portal.run(getattr(self._admin, name), *args, **kwargs)

    return method


for _name in ("create_topic", "delete_topic", "list_topics", "describe_topic", "list_partitions",
              "list_spus", "register_spu", "unregister_spu", "list_consumer_offsets",
              "delete_consumer_offset"):
    setattr(Admin, _name, _blocking(_name))
del _name


# ------------------------------------------------------------------------------ connection

_open_connections: weakref.WeakSet[Fluvial] = weakref.WeakSet()


class Fluvial:
    """Blocking twin of ``fluvial.client.fluvial.Fluvial``. Get one with ``connect()``."""

    def __init__(self, portal: _Portal, fl: _AsyncFluvial, release):
        self._portal = portal
        self._fl = fl
        self._release = release
        self.admin = Admin(portal, fl.admin)
        self._closed = False
        _open_connections.add(self)

    def __repr__(self) -> str:
        return f"<sync {self._fl!r}>"

    @property
    def cluster(self):
        return self._fl.cluster

    def __enter__(self) -> Fluvial:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def producer(self, topic: str, **config: Any) -> Producer:
        """A blocking ``Producer``; options as ``fluvial.client.producer.Producer``."""
        return Producer(self._portal, self._fl.producer(topic, **config))

    def sink(self, topic: str, *, stream: str | int, **config: Any) -> Sink:
        """A blocking ``Sink`` of bounded stream ``stream`` (docs/streams.md)."""
        return Sink(self._portal, self._fl.sink(topic, stream=stream, **config))

    def source(self, topic: str, *, stream: str | int, **config: Any) -> Source:
        """A blocking ``Source`` of bounded stream ``stream`` (docs/streams.md)."""
        return Source(self._portal, self._fl.source(topic, stream=stream, **config))

    def call(self, name: str, **config: Any) -> Call:
        """One blocking call of processor ``name``: ``with fl.call(NAME) as (sink, source)``;
        options as ``fluvial.client.call.Call``."""
        return Call(self._portal, self._fl.call(name, **config))

    def consumer(self, topic: str, **config: Any) -> Consumer:
        """A blocking ``Consumer``; options as ``fluvial.client.consumer.Consumer``."""
        return Consumer(self._portal, self._fl.consumer(topic, **config))

    def close(self) -> None:
        """Flush producers, close consumers and the connection, stop the loop thread.

        Raises:
            FluvialError: a producer's final flush failed (everything is closed anyway).
        """
        if self._closed:
            return
        self._closed = True
        _open_connections.discard(self)
        try:
            if self._portal.alive:
                self._portal.run(self._release)
        finally:
            self._portal.stop()


def connect(profile: str | None = None, endpoint: str | None = None, tls: Any = None,
            **options: Any) -> Fluvial:
    """Connect, blocking; the arguments are those of ``fluvial.connect``.

    Use it as ``with fluvial.sync.connect() as fl:`` or call ``fl.close()`` when done.
    """
    portal = _Portal()
    try:
        async def hold(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
            done = trio.Event()
            async with _async_connect(profile, endpoint, tls, **options) as fl:
                task_status.started((fl, done))
                await done.wait()

        fl, done = portal.start(hold)

        async def release() -> None:
            try:
                await fl.aclose()  # flush producers, close consumers; errors reach the caller
            finally:
                done.set()

        return Fluvial(portal, fl, release)
    except BaseException:
        portal.stop()
        raise


@atexit.register
def _close_all() -> None:
    for fl in list(_open_connections):
        try:
            fl.close()
        except Exception:  # noqa: BLE001 - at exit there is no one left to tell
            pass
