"""Supervising a cluster's processors: one ``fluvial run processor NAME`` process per processor,
restarted with backoff when it dies, stopped when its processor is deleted.

``decide`` is pure (what to start and stop, given what exists and what runs); ``supervise`` is
the trio loop that lists the processors, applies the decision and watches the processes.
A processor whose runtime exits 1 (Failed: its status says why) is not restarted until it is
re-created; one that crashes otherwise (killed, lost its cluster) is restarted after 0.5 s,
doubling up to 30 s, the backoff reset once it has run for a minute.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio

log = logging.getLogger("fluvial.processor")

FIRST_BACKOFF, MAX_BACKOFF, STABLE_AFTER = 0.5, 30.0, 60.0
EXIT_FAILED = 1


@dataclass
class Child:
    """What the supervisor knows of one processor's runtime."""

    proc: object | None = None  # a running process (anything with .returncode), or None
    started: float = 0.0
    backoff: float = FIRST_BACKOFF
    not_before: float = 0.0
    failed: bool = False  # exited 1 (status Failed): left alone until re-created


@dataclass
class Decision:
    start: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)


def exited(child: Child, returncode: int, now: float) -> None:
    """Record a runtime's exit: Failed stays down; a crash is restarted after the backoff."""
    child.proc = None
    if returncode == EXIT_FAILED:
        child.failed = True
        return
    if now - child.started >= STABLE_AFTER:
        child.backoff = FIRST_BACKOFF
    child.not_before = now + child.backoff
    child.backoff = min(child.backoff * 2, MAX_BACKOFF)


def decide(processors: Sequence[str], children: Mapping[str, Child], now: float) -> Decision:
    """Start every processor with no runtime whose backoff is over (and not Failed); stop the
    runtimes of processors that no longer exist."""
    d = Decision()
    for name in processors:
        c = children.get(name)
        if c is None or (c.proc is None and not c.failed and now >= c.not_before):
            d.start.append(name)
    d.stop = [n for n, c in children.items() if n not in processors and c.proc is not None]
    return d


def spawn_runtime(argv_prefix: Sequence[str]):
    """``spawn(name)`` for ``supervise``: ``ARGV_PREFIX run processor NAME`` as a process."""
    return lambda name: subprocess.Popen([*argv_prefix, "run", "processor", name])


async def supervise(list_processors, spawn, *, poll: float = 1.0) -> None:
    """Run until cancelled: ``await list_processors()`` -> names; ``spawn(name)`` -> the
    runtime's ``subprocess.Popen``. On cancellation every runtime gets SIGINT (then SIGKILL
    after 10 s)."""
    children: dict[str, Child] = {}
    try:
        while True:
            now = trio.current_time()
            for name, c in children.items():
                if c.proc is not None and c.proc.poll() is not None:
                    log.warning("processor %s: runtime exited with %s", name, c.proc.returncode)
                    exited(c, c.proc.returncode, now)
            names = await list_processors()
            for name in list(children):
                if name not in names and children[name].proc is None:
                    del children[name]  # deleted: a re-created one starts afresh
            d = decide(names, children, now)
            for name in d.stop:
                _stop(children.pop(name))
            for name in d.start:
                c = children.setdefault(name, Child())
                c.proc, c.started = spawn(name), now
                log.info("processor %s: runtime started (pid %d)", name, c.proc.pid)
            await trio.sleep(poll)
    finally:
        for c in children.values():
            _stop(c)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT (a runtime then reports Stopped and closes cleanly), SIGKILL after ``timeout``."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stop(c: Child) -> None:
    if c.proc is not None:
        stop_process(c.proc)
        c.proc = None


__all__ = ["Child", "Decision", "decide", "exited", "spawn_runtime", "stop_process", "supervise"]
