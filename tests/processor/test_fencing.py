"""One runtime per processor: a second ``fluvial run processor`` of the same processor fences the
first (a fence at a newer producer epoch in the state topic), which stops with a clear error;
the output stays exactly once while both ran."""

from __future__ import annotations

import collections
import subprocess

import trio

from fluvial import Offset
from fluvial.processor.spec import processor_spec
from harness.processes import fluvial_command

TOTAL = 120

FUNCTION = '''
def tag(value):
    return b"out-" + value
'''


async def _values(fl, topic):
    async with fl.consumer(topic, partition=0, offset=Offset.beginning(), continuous=False) as c:
        return [r.value async for r in c]


async def _stop(proc):
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_a_second_runtime_fences_the_first_and_the_output_stays_exactly_once(cluster, fl, new_topic,
                                                                                    tmp_path):
    d = tmp_path / "fns"
    d.mkdir()
    (d / "fencefn.py").write_text(FUNCTION)
    argv = [*fluvial_command(), "-c", cluster.endpoint, "run", "processor", "fp", "--log-level", "warning"]
    src, dst = await new_topic(), await new_topic()
    await fl.admin.create_processor("fp", processor_spec("fencefn:tag", [src], [dst], window_count=1, path=str(d)))
    first = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    second = None
    try:
        with trio.fail_after(60):
            async with fl.producer(src, linger=0) as p, trio.open_nursery() as n:
                sent = trio.Event()

                async def feed():
                    for i in range(TOTAL):
                        await p.send(b"%d" % i)
                        await p.flush()
                        if i == TOTAL // 3:
                            sent.set()
                        await trio.sleep(0.01)  # input flows while the second runtime starts

                n.start_soon(feed)
                await sent.wait()
                while not await _values(fl, dst):  # the first runtime writes
                    await trio.sleep(0.02)
                second = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL,
                                                          stderr=subprocess.DEVNULL)
                err = b""
                while chunk := await first.stderr.receive_some(65536):
                    err += chunk
                await first.wait()
            while len(await _values(fl, dst)) < TOTAL:
                await trio.sleep(0.05)
            while (st := (await fl.admin.describe_processor("fp")).status).pid != second.pid or \
                    st.lag.get(f"{src}/0", 1):
                await trio.sleep(0.05)
        message = err.decode()
        assert first.returncode != 0 and "run by another runtime" in message, message
        assert f"pid {second.pid} " in message, message
        assert second.returncode is None and st.state == "Running"
        got = collections.Counter(await _values(fl, dst))
        assert got == collections.Counter(b"out-%d" % i for i in range(TOTAL)), got
    finally:
        await _stop(first)
        if second is not None:
            await _stop(second)
