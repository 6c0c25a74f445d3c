"""The failure-test workload: writers that retry unacknowledged sends, and ReadCommitted consumers.

A writer sends one batch at a time (``harness.client``, not the client library under test); a
send answered OK is *acknowledged*. Any other outcome (error, timeout, lost connection) makes the
writer ask the SC for the leader again and resend the *same* batch, so a record may be stored more
than once, but only if one of its sends went unacknowledged (at-least-once). Everything lands in a
``harness.history.History``. Optional ReadCommitted consumers poll the leader and record every
(offset, value) they were served. The writers' and consumers' short back-offs between retries are
part of the workload, not synchronisation.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import trio

from fluvial.errors import ErrorCode
from fluvial.protocol import spu_api as api
from fluvial.protocol.record import encode_batch
from harness.client import RETRIABLE, Router, ScAdmin, fetch
from harness.history import History, make_id

@dataclass
class WorkloadConfig:
    """Args:
        topic, partitions: where to write.
        writers_per_partition: concurrent writers per partition (one batch in flight each).
        batch_records: records per produce request.
        value_bytes: pad each value to at least this many bytes.
        isolation: ReadCommitted (acks at the committed level) or ReadUncommitted.
        produce_timeout_ms: the server's produce timeout; the client waits 5 s longer.
        consumers: run one ReadCommitted consumer per partition.
        max_batches: stop each writer after this many acknowledged batches (None: until stopped).
        first_writer: the number of the first writer (``p<partition>w<first_writer>-...``), so
            that successive workloads sharing one ``History`` never reuse an id.
    """

    topic: str
    partitions: int = 1
    writers_per_partition: int = 2
    batch_records: int = 5
    value_bytes: int = 0
    isolation: api.Isolation = api.Isolation.ReadCommitted
    produce_timeout_ms: int = 3000
    consumers: bool = True
    max_batches: int | None = None
    first_writer: int = 0


class Workload:
    """Writers (and ReadCommitted consumers) against one topic; see the module docstring.

    Use ``async with open_workload(admin, config) as w:`` ... ``await w.stop()``; the ``History``
    is ``w.history``.
    """

    def __init__(self, admin: ScAdmin, config: WorkloadConfig, history: History | None = None):
        self.admin = admin
        self.config = config
        self.history = History() if history is None else history
        self._stopping = False
        self._writers_done = trio.Event()
        self._progress = trio.Event()
        self._active_writers = 0
        self._scope: trio.CancelScope | None = None
        self.read_back: dict[int, list[tuple[int, bytes]]] = {}

    # ------------------------------------------------------------------------------ waiting

    def _changed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def wait_for(self, condition, what: str, timeout: float):
        """Until ``condition()`` (sync, on the history) is truthy; re-checked on every ack.

        Raises:
            TimeoutError: naming ``what`` and the error counts so far.
        """
        with trio.move_on_after(timeout):
            while True:
                value = condition()
                if value:
                    return value
                if self._writers_done.is_set():
                    break
                await self._progress.wait()
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}; acked "
                           f"{len(self.history.acked)}, errors {dict(self.history.errors)}")

    async def wait_acks(self, count: int, timeout: float, partition: int | None = None) -> None:
        """Until ``count`` more batches are acknowledged (on ``partition``) from now."""
        now = time.monotonic()
        await self.wait_for(lambda: self.history.acks_since(now, partition) >= count,
                            f"{count} acknowledged batches", timeout)

    async def wait_writers_done(self, timeout: float) -> None:
        """Until every writer has stopped (each had ``max_batches`` acknowledged, or ``stop``).

        Raises:
            TimeoutError: with the acknowledgement and error counts so far.
        """
        with trio.move_on_after(timeout):
            await self._writers_done.wait()
            return
        raise TimeoutError(f"writers not done after {timeout}s; acked {len(self.history.acked)}, "
                           f"errors {dict(self.history.errors)}")

    def failed_sends(self) -> int:
        """Sends that were not acknowledged so far (errors, timeouts, lost connections)."""
        return sum(n for kind, n in self.history.errors.items() if not kind.startswith("consumer "))

    async def wait_failed_sends(self, count: int, timeout: float) -> None:
        """Until ``count`` more sends have failed from now."""
        start = self.failed_sends()
        await self.wait_for(lambda: self.failed_sends() - start >= count,
                            f"{count} failed sends", timeout)

    async def wait_failover(self, partition: int, killed_at: float, killed_spu: int,
                            timeout: float) -> float:
        """Seconds from the kill to the first acknowledgement by another SPU."""
        return await self.wait_for(
            lambda: self.history.failover_time(partition, killed_at, killed_spu),
            f"an acknowledgement on partition {partition} after killing spu {killed_spu}", timeout)

    # -------------------------------------------------------------------------------- tasks

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                if cfg.consumers:
                    for p in range(cfg.partitions):
                        nursery.start_soon(self._consumer, p)
                async with trio.open_nursery() as writers:
                    for p in range(cfg.partitions):
                        for w in range(cfg.writers_per_partition):
                            writers.start_soon(self._writer, p, cfg.first_writer + w)
                    task_status.started()
                self._writers_done.set()
                self._changed()
                await trio.sleep_forever()  # consumers run until stop()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop the writers after their current send (bounded by the produce timeout), then the
        consumers."""
        self._stopping = True
        with trio.move_on_after(timeout):
            await self._writers_done.wait()
        if self._scope is not None:
            self._scope.cancel()

    async def _writer(self, partition: int, writer: int) -> None:
        cfg = self.config
        router = Router(self.admin, cfg.topic)
        seq = 0
        acked_batches = 0
        pad = b""
        if cfg.value_bytes:
            pad = b"|" + b"x" * max(0, cfg.value_bytes - len(make_id(partition, writer, 0)) - 1)
        batch: list[bytes] | None = None
        delay = 0.02
        client_timeout = cfg.produce_timeout_ms / 1000 + 5
        while not self._stopping and (cfg.max_batches is None or acked_batches < cfg.max_batches):
            try:
                spu, host, port = await router.leader(partition)
                async with self.admin.connect(host, port) as conn:
                    while not self._stopping and (cfg.max_batches is None
                                                  or acked_batches < cfg.max_batches):
                        if batch is None:
                            batch = [make_id(partition, writer, seq + i) for i in range(cfg.batch_records)]
                            seq += cfg.batch_records
                        req = api.ProduceRequest(
                            None, cfg.isolation, cfg.produce_timeout_ms,
                            [api.TopicProduceData(cfg.topic, [api.PartitionProduceData(
                                partition, encode_batch([rid + pad for rid in batch]))])], [])
                        self.history.attempt(partition, writer, batch)
                        sent_at = time.monotonic()
                        resp = await conn.call(req, timeout=client_timeout)
                        pr = resp.responses[0].partitions[0]
                        if pr.error_code.ok:
                            self.history.ack(partition, pr.base_offset, batch, spu, sent_at,
                                             time.monotonic())
                            batch = None
                            acked_batches += 1
                            delay = 0.02
                            self._changed()
                            continue
                        self.history.errors[pr.error_code.code.name] += 1
                        self._changed()
                        if pr.error_code.code != ErrorCode.RequestTimedOut:
                            break  # not the leader any more (or worse): ask the SC again
                        # timed out: the leader may have changed meanwhile
                        if (await router.leader(partition))[0] != spu:
                            break
            except RETRIABLE as e:
                self.history.errors[type(e).__name__] += 1
                self._changed()
            if self._stopping:
                break
            await trio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _consumer(self, partition: int) -> None:
        """Poll the leader with ReadCommitted Fetch from the next offset, recording what is served."""
        cfg = self.config
        router = Router(self.admin, cfg.topic)
        offset = 0
        while True:
            try:
                spu, host, port = await router.leader(partition)
                async with self.admin.connect(host, port, "fluvial-chaos-consumer") as conn:
                    while True:
                        records, hw, error = await fetch(conn, cfg.topic, partition, offset,
                                                          api.Isolation.ReadCommitted)
                        if error is not None:
                            self.history.errors[f"consumer {error}"] += 1
                            break
                        for r in records:
                            if r.offset >= offset:
                                self.history.observe(partition, r.offset, r.value)
                        if records:
                            offset = max(offset, records[-1].offset + 1)
                        else:
                            await trio.sleep(0.02)
            except RETRIABLE as e:
                self.history.errors[f"consumer {type(e).__name__}"] += 1
            await trio.sleep(0.1)

    async def read_all(self, partition: int, timeout: float = 30.0) -> list[tuple[int, bytes]]:
        """Read the whole partition from its leader at ReadCommitted (after the writers stopped)."""
        router = Router(self.admin, self.config.topic)
        out: list[tuple[int, bytes]] = []
        with trio.fail_after(timeout):
            spu, host, port = await router.leader(partition)
            async with self.admin.connect(host, port, "fluvial-chaos-reader") as conn:
                offset = 0
                while True:
                    records, hw, error = await fetch(conn, self.config.topic, partition, offset,
                                                      api.Isolation.ReadCommitted)
                    if error is not None:
                        raise RuntimeError(f"read-back of partition {partition} at {offset}: {error}")
                    out += [(r.offset, r.value) for r in records if r.offset >= offset]
                    if records:
                        offset = records[-1].offset + 1
                    if offset >= hw:
                        break
        self.read_back[partition] = out
        return out


@contextlib.asynccontextmanager
async def open_workload(admin: ScAdmin, config: WorkloadConfig, history: History | None = None):
    """Run a ``Workload`` for the body of the block (recording into ``history``, a new one by
    default); it is stopped when the block exits."""
    workload = Workload(admin, config, history)
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        try:
            yield workload
        finally:
            with trio.CancelScope(shield=True):
                await workload.stop()
            nursery.cancel_scope.cancel()
