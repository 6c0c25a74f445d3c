"""Latency trace: monotonic timestamps of named events on a record's path, off by default.

Set ``FLUVIAL_TRACE=PREFIX`` in a process's environment and every ``mark(event, key)`` appends
one line ``<perf_counter_ns> <event> <key>`` to ``PREFIX.<pid>`` (line-buffered, so a process
killed by the bench has written what it marked). ``perf_counter_ns`` is CLOCK_MONOTONIC on
Linux: the stamps of an SPU, the bench's client and its consumer share one clock and can be
subtracted. ``bench/latency_breakdown.py`` joins them by key (``topic/partition/offset``).

When the variable is not set, ``mark`` is one global lookup and a return: the hot paths keep it.
"""

from __future__ import annotations

import os
import time

_PREFIX = os.environ.get("FLUVIAL_TRACE") or None
_out = None


def enabled() -> bool:
    return _PREFIX is not None


def now() -> int:
    return time.perf_counter_ns()


def mark(event: str, topic: str, partition: int, first: int, last: int | None = None,
         at: int | None = None) -> None:
    """Record ``event`` for offsets ``first .. last`` (inclusive; at most 64 of them) of
    ``topic/partition``, at ``at`` (a ``now()`` taken earlier) or now."""
    if _PREFIX is None:
        return
    global _out
    if _out is None:
        _out = open(f"{_PREFIX}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115 (lives with the process)
    t = time.perf_counter_ns() if at is None else at
    end = first if last is None else min(last, first + 63)
    _out.write("".join(f"{t} {event} {topic}/{partition}/{o}\n" for o in range(first, end + 1)))


def instruments() -> list:
    """With ``FLUVIAL_TRACE`` set, a trio instrument that writes every task step longer than
    200 us (``slow_step <task> <us>``) and every wait for I/O (``io_wait <us>`` when longer than
    200 us): what holds the event loop between two marks. Else none."""
    if _PREFIX is None:
        return []
    import trio

    class SlowSteps(trio.abc.Instrument):
        def __init__(self) -> None:
            self.t = 0

        def before_task_step(self, task) -> None:
            self.t = time.perf_counter_ns()

        def after_task_step(self, task) -> None:
            us = (time.perf_counter_ns() - self.t) // 1000
            if us > 200:
                _line(f"{time.perf_counter_ns()} slow_step {task.name} {us}\n")

    return [SlowSteps()]


def _line(text: str) -> None:
    global _out
    if _out is None:
        _out = open(f"{_PREFIX}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
    _out.write(text)
