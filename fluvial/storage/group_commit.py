"""Group commit bookkeeping: many appends, one fsync. Pure: no threads, no trio, no files.

Under the "sync" flush policy a produce is acknowledged only once its records are durable. An
fsync costs about as much for one batch as for a hundred, so the appends that arrive while one
fsync runs all wait for the next one. ``GroupCommit`` keeps the waiters in LEO order and tells
the caller when to start a flush; ``Replica.flush()`` does the fsync.

How a trio server uses it (every ``GroupCommit`` call on the event-loop thread)::

    result = replica.append(records, leader_epoch=epoch)
    if not gc.covered(result.leo):
        done = trio.Event()
        if gc.add_waiter(result.leo, done):
            nursery.start_soon(run_flushes)         # nobody is flushing: start
        await done.wait()                           # then check done's error, if the server keeps one

    async def run_flushes():
        while True:
            try:
                durable = await trio.to_thread.run_sync(replica.flush)
            except StorageError as exc:
                for waiter in gc.flush_failed():
                    fail(waiter, exc)
                return
            released, again = gc.flush_done(durable)
            for waiter in released:
                waiter.set()
            if not again:
                return

At most one flush runs at a time: waiters that arrive during it are covered by the next one,
which starts as soon as the current one returns. With N concurrent producers each fsync covers
up to N appends.

A server whose log can change under the waiters (an SPU replica is truncated while it follows,
then leads again) passes ``flush_done`` the storage's durable LEO *as of now*, not the value a
flush returned earlier (it may predate a truncation), and calls ``reset`` when the records the
waiters wait for may no longer be theirs: it hands every waiter back, to be failed, and restarts
``durable_leo`` at the storage's value. A flush in progress stays in progress.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any


class GroupCommit:
    """Waiters keyed by the LEO they need durable. Not thread-safe: call it from one thread."""

    def __init__(self, durable_leo: int = 0):
        self.durable_leo = durable_leo
        self.flushing = False
        self._waiters: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Waiters not yet released."""
        return len(self._waiters)

    def covered(self, leo: int) -> bool:
        """True when records up to ``leo`` (exclusive) are already durable."""
        return leo <= self.durable_leo

    def add_waiter(self, leo: int, waiter: Any) -> bool:
        """Register ``waiter`` until records below ``leo`` are durable.

        Returns:
            True when the caller must start a flush now (none is running); the flag stays set
            until ``flush_done`` or ``flush_failed``.
        """
        heapq.heappush(self._waiters, (leo, next(self._seq), waiter))
        if self.flushing:
            return False
        self.flushing = True
        return True

    def flush_done(self, durable_leo: int) -> tuple[list[Any], bool]:
        """A flush returned; the storage's durable LEO is now ``durable_leo`` (it only goes down
        after a truncation).

        Returns:
            (waiters now covered, in LEO order; True when others still wait and the caller must
            flush again; ``flushing`` stays set in that case).
        """
        self.durable_leo = durable_leo
        released = []
        while self._waiters and self._waiters[0][0] <= durable_leo:
            released.append(heapq.heappop(self._waiters)[2])
        self.flushing = bool(self._waiters)
        return released, self.flushing

    def flush_failed(self) -> list[Any]:
        """A flush raised: every waiter fails with it. Returns them all."""
        waiters = [w for _, _, w in sorted(self._waiters)]
        self._waiters.clear()
        self.flushing = False
        return waiters

    def reset(self, durable_leo: int) -> list[Any]:
        """The log changed under the waiters (truncated, or led at another epoch): returns every
        waiter, to be failed, and restarts at ``durable_leo``. ``flushing`` is kept: a flush in
        progress still ends with ``flush_done``."""
        waiters = [w for _, _, w in sorted(self._waiters)]
        self._waiters.clear()
        self.durable_leo = durable_leo
        return waiters


INLINE_FLUSH_BYTES = 64 * 1024  # at most this much unflushed to fsync on the event loop (a few small batches)
INLINE_FLUSH_SECONDS = 0.002  # ... and only while the last fsync took at most this long


class FlushPlacement:
    """Where a server runs a flush: on its event-loop thread, or in a worker thread.

    A worker thread costs two GIL hand-offs (the thread must get the GIL to start, and again to
    hand the result back), and each waits until the event loop lets go of the GIL: a 150 us
    fdatasync took 450 us from append to durable that way on a two-core machine. On the loop
    thread the fsync costs exactly its own time, but nothing else runs meanwhile. So a flush
    runs there only when that costs nobody anything: no other task is ready to run, little is
    unflushed (the fsync is short), and the disk was fast last time. One slow fsync (a stalled
    or saturated disk) sends every later one to a worker thread until one of them is fast
    again; under load (tasks ready to run) group commit in a worker thread keeps the loop
    serving. One placement per server (one disk history), shared by its replicas.
    """

    def __init__(self, max_bytes: int = INLINE_FLUSH_BYTES,
                 max_seconds: float = INLINE_FLUSH_SECONDS):
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.last_seconds = 0.0  # how long the last fsync took (of the disk, not of the hop)

    def inline(self, runnable_tasks: int, unflushed_bytes: int) -> bool:
        """Whether the next flush, of ``unflushed_bytes``, runs on the event-loop thread while
        ``runnable_tasks`` other tasks are ready to run."""
        return (runnable_tasks == 0 and unflushed_bytes <= self.max_bytes
                and self.last_seconds <= self.max_seconds)

    def took(self, seconds: float) -> None:
        """A flush (inline or in a thread) took ``seconds`` of its own."""
        self.last_seconds = seconds
