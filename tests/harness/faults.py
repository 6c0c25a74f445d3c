"""Seeded fault injection for byte streams.

``Faults`` describes what may go wrong, and ``Faults(seed=...).wrap(stream)`` returns a
``trio.abc.Stream`` that does it, with every choice drawn from ``random.Random(seed)``, so one seed
replays one run exactly (tigerbeetle's VOPR idea, on a small scale). Show the seed when a test
fails: parametrize the test over seeds (pytest then prints ``[seed=N]``) or put ``faults`` in the
assertion message; ``str(faults)`` and every injected error carry it.

What a wrapped stream can do:

* fragment writes: ``send_all`` writes its data in pieces of 1..``max_write_piece_bytes`` bytes;
* fragment reads: ``receive_some`` returns at most 1..``max_read_bytes`` bytes per call;
* delay: before a write piece or a read, with probability ``delay_probability``, sleep up to
  ``max_delay_seconds`` (use an autojump clock), or when that is 0 just yield to the scheduler
  1-3 times, which reorders tasks without taking time;
* cut: after ``cut_after_bytes`` bytes were written in total, write no more, close the underlying
  stream and raise ``trio.BrokenResourceError``; the peer sees the connection end mid-stream.

Example::

    faults = Faults(seed=7, max_write_piece_bytes=1, max_read_bytes=1)
    async with open_multiplexer(faults.wrap(stream)) as conn: ...
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio


@dataclass(frozen=True)
class Faults:
    seed: int
    max_write_piece_bytes: int | None = None
    max_read_bytes: int | None = None
    delay_probability: float = 0.0
    max_delay_seconds: float = 0.0
    cut_after_bytes: int | None = None

    def __post_init__(self):
        for name in ("max_write_piece_bytes", "max_read_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"Faults.{name} must be at least 1 or None")
        if self.cut_after_bytes is not None and self.cut_after_bytes < 0:
            raise ValueError("Faults.cut_after_bytes must be >= 0 or None")
        if not 0.0 <= self.delay_probability <= 1.0:
            raise ValueError("Faults.delay_probability must be within 0..1")

    def __str__(self) -> str:
        shown = [f"seed={self.seed}"]
        for name in ("max_write_piece_bytes", "max_read_bytes", "cut_after_bytes"):
            if getattr(self, name) is not None:
                shown.append(f"{name}={getattr(self, name)}")
        if self.delay_probability:
            shown.append(f"delay_probability={self.delay_probability}")
            shown.append(f"max_delay_seconds={self.max_delay_seconds}")
        return f"Faults({', '.join(shown)})"

    def wrap(self, stream: trio.abc.Stream, *, salt: int = 0) -> FaultyStream:
        """Wrap ``stream``. Wrapping both ends of a connection with the same ``Faults``? Give each
        a different ``salt`` so that they do not make the same choices."""
        return FaultyStream(stream, self, random.Random(self.seed * 1_000_003 + salt))


class FaultyStream(trio.abc.Stream):
    """A ``trio.abc.Stream`` that injects the faults of a ``Faults`` into ``inner``.

    Attributes:
        bytes_sent: bytes passed to the inner stream so far.
        events: a short log of the faults injected, for failure messages.
    """

    def __init__(self, inner: trio.abc.Stream, faults: Faults, rng: random.Random):
        self.inner = inner
        self.faults = faults
        self._rng = rng
        self.bytes_sent = 0
        self.events: list[str] = []
        self._cut = False

    def __repr__(self) -> str:
        return f"<FaultyStream {self.faults}>"

    async def _maybe_delay(self) -> None:
        faults = self.faults
        if faults.delay_probability and self._rng.random() < faults.delay_probability:
            if faults.max_delay_seconds > 0:
                await trio.sleep(self._rng.uniform(0, faults.max_delay_seconds))
            else:
                for _ in range(self._rng.randint(1, 3)):
                    await trio.lowlevel.checkpoint()

    def _broken(self) -> trio.BrokenResourceError:
        return trio.BrokenResourceError(
            f"fault injection: connection cut after {self.bytes_sent} bytes ({self.faults})")

    async def _cut_now(self) -> None:
        self._cut = True
        self.events.append(f"cut after {self.bytes_sent} bytes")
        await trio.aclose_forcefully(self.inner)
        raise self._broken()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._cut:
            raise self._broken()
        view = memoryview(data).cast("B")
        faults = self.faults
        pos = 0
        while pos < len(view):
            n = len(view) - pos
            if faults.max_write_piece_bytes is not None:
                n = min(n, self._rng.randint(1, faults.max_write_piece_bytes))
            if faults.cut_after_bytes is not None:
                allowed = faults.cut_after_bytes - self.bytes_sent
                if allowed <= 0:
                    await self._cut_now()
                n = min(n, allowed)
            await self._maybe_delay()
            await self.inner.send_all(view[pos : pos + n])
            self.bytes_sent += n
            pos += n
        if faults.cut_after_bytes is not None and self.bytes_sent >= faults.cut_after_bytes \
                and len(view):
            await self._cut_now()
        if not len(view):
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        if self._cut:
            raise self._broken()
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._cut:
            raise self._broken()
        limit = max_bytes
        if self.faults.max_read_bytes is not None:
            piece = self._rng.randint(1, self.faults.max_read_bytes)
            limit = piece if limit is None else min(limit, piece)
        await self._maybe_delay()
        try:
            return await self.inner.receive_some(limit)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            if self._cut:  # our own cut closed the inner stream under this receive
                raise self._broken() from exc
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()
