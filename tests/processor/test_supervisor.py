"""The supervisor's decisions (pure) and the supervisor restarting a killed runtime."""

from __future__ import annotations

import signal
import subprocess
import sys

import trio

from fluvial.processor.supervisor import FIRST_BACKOFF, Child, decide, exited, supervise


class _Proc:
    def __init__(self):
        self.returncode = None


def test_start_missing_stop_deleted_and_back_off_crashes():
    assert decide(["a", "b"], {}, 0).start == ["a", "b"]
    running = Child(_Proc())
    assert decide(["a"], {"a": running, "gone": Child(_Proc())}, 0).stop == ["gone"]
    c = Child(_Proc(), started=0.0)
    exited(c, -9, now=1.0)
    assert decide(["a"], {"a": c}, 1.0).start == [] and decide(["a"], {"a": c}, 1.0 + FIRST_BACKOFF).start == ["a"]
    exited(c, -9, now=2.0)
    assert c.backoff == 4 * FIRST_BACKOFF
    exited(c, -9, now=100.0)  # after a long run the backoff starts over
    assert c.not_before == 100.0 + FIRST_BACKOFF


def test_a_failed_runtime_stays_down():
    c = Child(_Proc())
    exited(c, 1, now=5.0)
    assert c.failed and decide(["a"], {"a": c}, 1e9).start == []


async def test_supervise_restarts_a_killed_runtime_and_stops_a_deleted_one():
    names = ["p"]
    procs = []

    def spawn(name):
        procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return procs[-1]

    async def listed():
        return list(names)

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                n.start_soon(lambda: supervise(listed, spawn, poll=0.05))
                while not procs:
                    await trio.sleep(0.02)
                procs[0].send_signal(signal.SIGKILL)
                while len(procs) < 2:
                    await trio.sleep(0.02)
                names.clear()
                while procs[1].poll() is None:
                    await trio.sleep(0.02)
                n.cancel_scope.cancel()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode == -signal.SIGKILL and procs[1].returncode is not None and len(procs) == 2
