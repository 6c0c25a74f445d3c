"""Exactly once across kill -9: a processor process (``fluvial run processor``) is killed 20 times
at random instants while its input flows; the output is exactly the expected multiset."""

from __future__ import annotations

import collections
import random
import signal
import subprocess

import pytest
import trio

from fluvial import Offset
from fluvial.processor.spec import processor_spec
from harness.processes import fluvial_command

TOTAL = 300
KILLS = 20

FUNCTION = '''
def tag(value):
    return b"out-" + value
'''


async def _all(fl, topic, partitions):
    got = []
    for p in range(partitions):
        async with fl.consumer(topic, partition=p, offset=Offset.beginning(), continuous=False) as c:
            got += [r.value async for r in c]
    return got


@pytest.mark.parametrize("inputs", [2, 1], ids=["planned-runs", "replayable-runs"])
async def test_kill_9_twenty_times_loses_and_doubles_nothing(cluster, fl, new_topic, tmp_path, inputs):
    """Two input partitions: every run's plan is written before its outputs; one: count windows
    are replayed from the committed position alone (fluvial.processor.windows.replayable)."""
    d = tmp_path / "fns"
    d.mkdir()
    (d / "killfn.py").write_text(FUNCTION)
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    print(f"seed {seed}")
    argv = [*fluvial_command(), "-c", cluster.endpoint, "run", "processor", "kp", "--log-level", "warning"]
    with trio.fail_after(150):
        src, dst = await new_topic(partitions=inputs), await new_topic(partitions=2)
        await fl.admin.create_processor("kp", processor_spec("killfn:tag", [src], [dst], window_count=3,
                                                             path=str(d)))

        async def feed():
            async with fl.producer(src, linger=0) as p:
                for i in range(TOTAL):
                    await p.send(b"%d" % i)
                    if i % 10 == 9:
                        await p.flush()
                        await trio.sleep(rnd.uniform(0.05, 0.25))  # input keeps flowing

        async with trio.open_nursery() as n:
            n.start_soon(feed)
            for _ in range(KILLS):
                proc = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    await trio.sleep(rnd.uniform(0.4, 1.6))  # a random instant of its life
                finally:
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
        proc = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while len(await _all(fl, dst, 2)) < TOTAL:
                await trio.sleep(0.1)
            while any(lag.get(f"{src}/{p}", 1) for lag in [(await fl.admin.describe_processor("kp")).status.lag]
                      for p in range(inputs)):
                await trio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    got = collections.Counter(await _all(fl, dst, 2))
    want = collections.Counter(b"out-%d" % i for i in range(TOTAL))
    assert got == want, (seed, got - want, want - got)
    windows = (await fl.admin.describe_processor("kp")).status.windows_done
    assert windows == TOTAL // 3
