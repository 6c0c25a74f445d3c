"""The processor runtime in the test's trio run: function shapes, windows, retries and
failures. (Killing a runtime process: test_kill.py.)"""

from __future__ import annotations

import json
import textwrap

import pytest
import trio

from fluvial import Offset
from fluvial.processor.runtime import ProcessorFailed, run_processor
from fluvial.processor.spec import processor_spec

TIMEOUT = 45

FUNCTIONS = '''
import json, os

async def average(inputs, outputs):
    # riff's time-averager: the average of the numbers in each window
    nums = [float(r.value) async for r in inputs[0]]
    if nums:
        await outputs[0].send({"average": sum(nums) / len(nums), "count": len(nums)})
    await outputs[0].aclose()

def upper(value):
    return None if value == b"drop" else value.upper()

async def join(inputs, outputs):
    left = {r.key: r.value async for r in inputs[0]}
    async for r in inputs[1]:
        if r.key in left:
            await outputs[0].send(left[r.key] + b"+" + r.value, key=r.key)
    await outputs[0].aclose()

def flaky(value):
    marker = os.path.join(os.path.dirname(__file__), "attempts")
    n = 0
    if os.path.exists(marker):
        with open(marker) as f:
            n = int(f.read())
    with open(marker, "w") as f:
        f.write(str(n + 1))
    if n < 2:
        raise RuntimeError(f"flaky attempt {n}")
    return value

def always_fails(value):
    raise ValueError("no good: " + value.decode())

async def leaves_open(inputs, outputs):
    pass

def not_json(value):
    return b"{" + value
'''


@pytest.fixture
def fn_dir(tmp_path):
    d = tmp_path / "fns"
    d.mkdir()
    (d / f"fns_{id(d)}.py").write_text(textwrap.dedent(FUNCTIONS))
    return d, f"fns_{id(d)}"


async def _produce(fl, topic, values, keys=None):
    async with fl.producer(topic, linger=0) as p:
        for i, v in enumerate(values):
            await p.send(v, key=None if keys is None else keys[i])
        await p.flush()


async def _read(fl, topic, n, partitions=1):
    """The first ``n`` records of ``topic`` (all partitions), waiting for them."""
    got = []
    for p in range(partitions):
        async with fl.consumer(topic, partition=p, offset=Offset.beginning(), continuous=False) as c:
            got += [r async for r in c]
    return got


async def _wait_records(fl, topic, n, partitions=1):
    while True:
        got = await _read(fl, topic, n, partitions)
        if len(got) >= n:
            return got
        await trio.sleep(0.05)


async def _start(fl, nursery, name, spec):
    await fl.admin.create_processor(name, spec)
    done = trio.Event()
    result = {}

    async def run():
        try:
            await run_processor(fl, name)
        except ProcessorFailed as e:
            result["error"] = e
        finally:
            done.set()

    nursery.start_soon(run)
    return done, result


async def test_time_averager_in_count_windows(fl, new_topic, fn_dir):
    d, mod = fn_dir
    with trio.fail_after(TIMEOUT):
        nums, avgs = await new_topic(), await new_topic(content_type="application/json")
        async with trio.open_nursery() as n:
            await _start(fl, n, "avg", processor_spec(f"{mod}:average", [nums], [avgs], window_count=4, path=str(d)))
            await _produce(fl, nums, [str(i) for i in range(1, 13)])
            got = await _wait_records(fl, avgs, 3)
            n.cancel_scope.cancel()
        assert [json.loads(r.value) for r in got] == [{"average": a, "count": 4} for a in (2.5, 6.5, 10.5)]
        assert all(dict(r.headers)["fluvial-processor-window"] == f"avg:{i}".encode() for i, r in enumerate(got))
        st = (await fl.admin.describe_processor("avg")).status
        assert (st.state, st.windows_done, st.pid) == ("Stopped", 3, 0)


async def test_time_windows_average_whatever_arrived(fl, new_topic, fn_dir):
    d, mod = fn_dir
    with trio.fail_after(TIMEOUT):
        nums, avgs = await new_topic(), await new_topic()
        await _produce(fl, nums, ["2", "4", "6"])
        async with trio.open_nursery() as n:
            await _start(fl, n, "tavg", processor_spec(f"{mod}:average", [nums], [avgs], window=0.2, path=str(d)))
            got = await _wait_records(fl, avgs, 1)
            n.cancel_scope.cancel()
        assert json.loads(got[0].value) == {"average": 4.0, "count": 3}


async def test_request_reply_drops_none_and_spreads_over_partitions(fl, new_topic, fn_dir):
    d, mod = fn_dir
    with trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic(partitions=2)
        async with trio.open_nursery() as n:
            await _start(fl, n, "up", processor_spec(f"{mod}:upper", [src], [dst], window_count=2, path=str(d)))
            await _produce(fl, src, [b"a", b"drop", b"b", b"c"])
            got = await _wait_records(fl, dst, 3, partitions=2)
            n.cancel_scope.cancel()
        assert sorted(r.value for r in got) == [b"A", b"B", b"C"]
        assert {r.partition for r in got} == {0, 1}


async def test_two_input_join(fl, new_topic, fn_dir):
    d, mod = fn_dir
    with trio.fail_after(TIMEOUT):
        left, right, out = await new_topic(), await new_topic(), await new_topic()
        await _produce(fl, left, [b"L1", b"L2"], keys=[b"1", b"2"])
        await _produce(fl, right, [b"R2", b"R3"], keys=[b"2", b"3"])
        async with trio.open_nursery() as n:
            await _start(fl, n, "join", processor_spec(f"{mod}:join", [left, right], [out], window_count=4, path=str(d)))
            got = await _wait_records(fl, out, 1)
            n.cancel_scope.cancel()
        assert [(r.key, r.value) for r in got] == [(b"2", b"L2+R2")]


async def test_a_raising_function_is_retried_then_succeeds(fl, new_topic, fn_dir):
    d, mod = fn_dir
    with trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic()
        async with trio.open_nursery() as n:
            await _start(fl, n, "flaky", processor_spec(f"{mod}:flaky", [src], [dst], window_count=1,
                                                        path=str(d), max_failures=3))
            await _produce(fl, src, [b"x"])
            got = await _wait_records(fl, dst, 1)
            n.cancel_scope.cancel()
        assert [r.value for r in got] == [b"x"]
        assert "flaky attempt 1" in (await fl.admin.describe_processor("flaky")).status.last_error


@pytest.mark.parametrize("fn, match", [("always_fails", "no good: x"), ("leaves_open", "without closing"),
                                       ("not_json", "does not fit content type application/json")])
async def test_a_window_that_keeps_failing_makes_the_processor_failed(fl, new_topic, fn_dir, fn, match):
    d, mod = fn_dir
    with trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic(content_type="application/json")
        async with trio.open_nursery() as n:
            done, result = await _start(fl, n, "bad", processor_spec(f"{mod}:{fn}", [src], [dst], window_count=1,
                                                                     path=str(d), max_failures=2))
            await _produce(fl, src, [b"x"])
            await done.wait()
        st = (await fl.admin.describe_processor("bad")).status
        assert "result" not in result and st.state == "Failed" and "Traceback" in st.last_error
        assert match in st.last_error and match in str(result["error"])
        assert await _read(fl, dst, 0) == []


async def test_dead_letter_takes_the_window_and_the_processor_goes_on(fl, new_topic, fn_dir):
    d, mod = fn_dir
    with trio.fail_after(TIMEOUT):
        src, dst, dlq = await new_topic(), await new_topic(), await new_topic()
        async with trio.open_nursery() as n:
            await _start(fl, n, "dl", processor_spec(f"{mod}:always_fails", [src], [dst], window_count=1,
                                                     path=str(d), max_failures=1, dead_letter=dlq))
            await _produce(fl, src, [b"p", b"q"])
            got = await _wait_records(fl, dlq, 2)
            n.cancel_scope.cancel()
        assert [r.value for r in got] == [b"p", b"q"]
        assert dict(got[0].headers)["fluvial-processor-error"] == b"ValueError: no good: p"


async def test_a_bad_function_path_fails_with_the_import_error(fl, new_topic, fn_dir):
    d, _ = fn_dir
    with trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic()
        await fl.admin.create_processor("nope", processor_spec("no_such_module:f", [src], [dst], path=str(d)))
        with pytest.raises(ProcessorFailed, match="No module named 'no_such_module'"):
            await run_processor(fl, "nope")
        st = (await fl.admin.describe_processor("nope")).status
        assert st.state == "Failed" and "ModuleNotFoundError" in st.last_error


class _Crash(Exception):
    """Stands for the process dying at that instant."""


@pytest.mark.parametrize("stored", [False, True], ids=["before-the-write", "ack-lost"])
async def test_a_crash_while_writing_outputs_replays_the_window_exactly_once(fl, new_topic, fn_dir,
                                                                             monkeypatch, stored):
    from fluvial.processor import runtime

    d, mod = fn_dir
    real = runtime._Runtime._produce
    crashes = []

    async def crash_once(self, topic, partition, batch):
        if not crashes:
            crashes.append(topic)
            if stored:
                await real(self, topic, partition, batch)  # stored, the acknowledgement lost
            raise _Crash()
        await real(self, topic, partition, batch)

    monkeypatch.setattr(runtime._Runtime, "_produce", crash_once)
    with trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic()
        await _produce(fl, src, [b"a", b"b", b"c", b"d"])
        await fl.admin.create_processor("crash", processor_spec(f"{mod}:upper", [src], [dst], window_count=2,
                                                                path=str(d)))
        try:
            await run_processor(fl, "crash")
        except* _Crash:
            pass
        assert crashes == [dst]
        async with trio.open_nursery() as n:
            n.start_soon(run_processor, fl, "crash")
            got = await _wait_records(fl, dst, 4)
            while (await fl.admin.describe_processor("crash")).status.windows_done < 2:
                await trio.sleep(0.05)
            n.cancel_scope.cancel()
        assert [r.value for r in await _read(fl, dst, 0)] == [b"A", b"B", b"C", b"D"]
