"""``fl.call(NAME)``: one invocation of a processor's function per call, its outputs streamed
back until EOS, exactly once across a runtime's crash (docs/processors.md, "Calling a
processor"). The pure bookkeeping: test_call_state.py."""

from __future__ import annotations

import textwrap

import pytest
import trio

from fluvial import Offset, ProcessorCallError, StreamIncomplete
from fluvial.processor.call_state import OUTPUT_HEADER, replies_topic
from fluvial.processor.calls import ensure_call_topics, partition_offsets
from fluvial.processor.runtime import run_processor
from fluvial.processor.spec import processor_spec
from fluvial.protocol.markers import stream_of

TIMEOUT = 45

FUNCTIONS = '''
def upper(value):
    if value == b"boom":
        raise ValueError("no good: " + value.decode())
    return None if value == b"drop" else value.upper()

async def total(inputs, outputs):
    # streaming: the sum of the call's numbers per input, then their count on the second output
    sums = [sum([int(r.value) async for r in src]) for src in inputs]
    for s in sums:
        await outputs[0].send(str(s))
    await outputs[1].send(str(len(sums)), key=b"n", headers={"h": "1"})
    await outputs[0].aclose()
    await outputs[1].aclose()

async def many(inputs, outputs):
    async for r in inputs[0]:
        for i in range(int(r.value)):
            await outputs[0].send(b"%d" % i)
    await outputs[0].aclose()
'''


@pytest.fixture
def fn_dir(tmp_path):
    d = tmp_path / "fns"
    d.mkdir()
    mod = f"callfns_{id(d)}"
    (d / f"{mod}.py").write_text(textwrap.dedent(FUNCTIONS))
    return d, mod


async def _create(fl, new_topic, fn_dir, name, function, *, inputs=1, outputs=1):
    d, mod = fn_dir
    ins = [await new_topic() for _ in range(inputs)]
    outs = [await new_topic() for _ in range(outputs)]
    await fl.admin.create_processor(name, processor_spec(f"{mod}:{function}", ins, outs,
                                                         window_count=1, path=str(d)))
    return ins, outs


async def _call(fl, name, values, **kw):
    async with fl.call(name, **kw) as (sink, source):
        for v in values:
            if isinstance(v, tuple):
                await sink.send(v[1], input=v[0])
            else:
                await sink.send(v)
        await sink.aclose()
        return [r async for r in source]


async def _all(fl, topic):
    async with fl.consumer(topic, partition=0, offset=Offset.beginning(), continuous=False) as c:
        return [r async for r in c]


async def test_request_reply_round_trip(fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        _, (out,) = await _create(fl, new_topic, fn_dir, "up", "upper")
        async with trio.open_nursery() as n:
            n.start_soon(run_processor, fl, "up")
            got = await _call(fl, "up", [b"a", b"drop", b"bc"])
            n.cancel_scope.cancel()
        assert [r.value for r in got] == [b"A", b"BC"]
        assert all(dict(r.headers)[OUTPUT_HEADER] == b"0" for r in got)
        assert await _all(fl, out) == []  # a call's outputs go to its reply only


async def test_streaming_round_trip_with_two_inputs_and_two_outputs(fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "tot", "total", inputs=2, outputs=2)
        async with trio.open_nursery() as n:
            n.start_soon(run_processor, fl, "tot")
            got = await _call(fl, "tot", [b"1", b"2", (1, b"10"), b"3", (1, b"20")])
            n.cancel_scope.cancel()
        assert [(r.value, dict(r.headers)[OUTPUT_HEADER]) for r in got] == \
            [(b"6", b"0"), (b"30", b"0"), (b"2", b"1")]
        assert got[2].key == b"n" and dict(got[2].headers)["h"] == b"1"


async def test_concurrent_calls_get_their_own_outputs(fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "tot2", "total", inputs=2, outputs=2)
        results = {}
        async with trio.open_nursery() as n:
            n.start_soon(run_processor, fl, "tot2")
            gates = [trio.Event() for _ in range(3)]

            async def one(i):
                async with fl.call("tot2") as (sink, source):
                    for j in range(5):
                        await sink.send(b"%d" % (i * 100 + j))
                        if j == 2:  # the calls interleave in the calls topic
                            gates[i].set()
                            for g in gates:
                                await g.wait()
                    results[i] = [r.value async for r in source]

            async with trio.open_nursery() as callers:
                for i in range(3):
                    callers.start_soon(one, i)
            n.cancel_scope.cancel()
        assert results == {i: [b"%d" % (5 * i * 100 + 10), b"0", b"2"] for i in range(3)}


async def test_a_raising_function_gives_the_caller_its_error(fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "boom", "upper")
        async with trio.open_nursery() as n:
            n.start_soon(run_processor, fl, "boom")
            with pytest.raises(ProcessorCallError, match="ValueError: no good: boom") as info:
                await _call(fl, "boom", [b"a", b"boom"])
            assert "Traceback" in info.value.remote_error
            assert isinstance(info.value, StreamIncomplete)
            # the processor goes on: the next call is answered
            assert [r.value for r in await _call(fl, "boom", [b"x"])] == [b"X"]
            n.cancel_scope.cancel()


async def test_no_such_processor_is_a_clear_error(fl):
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ProcessorCallError, match="no processor of that name"):
            async with fl.call("nobody"):
                pass


async def test_a_bad_input_index_is_refused(fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "idx", "upper")
        async with fl.call("idx", timeout=0.01) as (sink, _):
            with pytest.raises(ValueError, match="has 1 input"):
                await sink.send(b"a", input=1)


async def test_a_call_waits_for_the_runtime_then_times_out(fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "idle", "upper")
        with pytest.raises(ProcessorCallError, match="no complete reply within 0.5 s"):
            await _call(fl, "idle", [b"a"], timeout=0.5)
        # a call made while no runtime runs is answered once one starts
        async with trio.open_nursery() as n:
            async with fl.call("idle") as (sink, source):
                await sink.send(b"late")
                await sink.aclose()
                n.start_soon(run_processor, fl, "idle")
                assert [r.value async for r in source] == [b"LATE"]
            n.cancel_scope.cancel()


# ------------------------------------------------------------------------- exactly once


async def _reply_log(fl, name):
    """The replies topic's data records per call id."""
    per = {}
    for r in await _all(fl, replies_topic(name)):
        per.setdefault(stream_of(r.headers), []).append(r.value)
    return per


class _Crash(Exception):
    """Stands for the runtime dying at that instant."""


@pytest.mark.parametrize("stored", [False, True], ids=["before-the-write", "ack-lost"])
async def test_a_crash_while_writing_a_reply_replays_it_exactly_once(fl, new_topic, fn_dir,
                                                                    monkeypatch, stored):
    from fluvial.processor import calls

    real = calls.send_batch
    sent = []

    async def crash_at_the_second_batch(fl_, topic, partition, batch, **kw):
        sent.append(topic)
        if len(sent) == 2:
            if stored:
                await real(fl_, topic, partition, batch, **kw)  # stored, the acknowledgement lost
            raise _Crash()
        await real(fl_, topic, partition, batch, **kw)

    monkeypatch.setattr(calls, "send_batch", crash_at_the_second_batch)
    monkeypatch.setattr(calls, "DEFAULT_MAX_REQUEST_SIZE", 1)  # every batch a request of its own
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "many", "many")
        async with trio.open_nursery() as n:
            got = []

            async def caller():
                got.extend(r.value for r in await _call(fl, "many", [b"700", b"600"], timeout=15))

            n.start_soon(caller)
            try:
                await run_processor(fl, "many")
            except* _Crash:
                pass
            assert len(sent) == 2
            n.start_soon(run_processor, fl, "many")
            while len(got) < 1300:
                await trio.sleep(0.02)
            n.cancel_scope.cancel()
        want = [b"%d" % i for i in range(700)] + [b"%d" % i for i in range(600)]
        assert got == want
        log = await _reply_log(fl, "many")
        assert list(log.values()) == [want]  # once in the log too


async def test_a_call_answered_while_an_older_one_is_open_is_not_answered_again(fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "reup", "upper")
        async with fl.call("reup") as (old_sink, old_source):
            await old_sink.send(b"old")  # open across the restart: the restart reads from here
            async with trio.open_nursery() as n:
                n.start_soon(run_processor, fl, "reup")
                assert [r.value for r in await _call(fl, "reup", [b"new"])] == [b"NEW"]
                n.cancel_scope.cancel()
            async with trio.open_nursery() as n:
                n.start_soon(run_processor, fl, "reup")
                await old_sink.aclose()
                assert [r.value async for r in old_source] == [b"OLD"]
                assert sorted(map(sorted, (await _reply_log(fl, "reup")).values())) == [[b"NEW"], [b"OLD"]]
                # and the next call still gets its reply (its sequences follow on)
                assert [r.value for r in await _call(fl, "reup", [b"next"])] == [b"NEXT"]
                n.cancel_scope.cancel()
        assert sorted(map(sorted, (await _reply_log(fl, "reup")).values())) == [[b"NEW"], [b"NEXT"], [b"OLD"]]


async def test_kill_9_the_runtime_during_calls_the_callers_get_exactly_their_outputs(
        cluster, fl, new_topic, fn_dir):
    import random
    import signal
    import subprocess

    from harness.processes import fluvial_command

    d, _ = fn_dir
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    print(f"seed {seed}")
    argv = [*fluvial_command(), "-c", cluster.endpoint, "run", "processor", "kcall", "--log-level", "warning"]
    calls_n, sizes = 5, [7500 + 500 * i for i in range(5)]  # replies of 2 requests (> 1 MiB)
    kills_max = 4  # the cluster fixture gives the whole test 30 s
    with trio.fail_after(25):
        await _create(fl, new_topic, fn_dir, "kcall", "many")
        await ensure_call_topics(fl, "kcall")
        got: dict[int, list] = {}
        async with trio.open_nursery() as n:
            async def caller(i):
                got[i] = [r.value for r in await _call(fl, "kcall", [b"%d" % sizes[i], b"3"], timeout=20)]

            for i in range(calls_n):
                n.start_soon(caller, i)
            kills = 0

            async def written():  # the replies partition's end: grows while the runtime answers
                return (await partition_offsets(fl, replies_topic("kcall"), 0)).last_stable_offset

            while len(got) < calls_n:
                before = await written()
                proc = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL,
                                                        stderr=subprocess.DEVNULL)
                try:
                    # the runtime is answering (its replies grow): kill it a moment later
                    while kills < kills_max and len(got) < calls_n and await written() == before:
                        await trio.sleep(0.01)
                    with trio.move_on_after(rnd.uniform(0, 0.15) if kills < kills_max else 20):
                        while len(got) < calls_n:
                            await trio.sleep(0.02)
                finally:
                    if len(got) < calls_n:
                        kills += 1
                        print("kill", kills, len(got), await written())
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
        print(f"{kills} kills")
    for i in range(calls_n):
        assert got[i] == [b"%d" % j for j in range(sizes[i])] + [b"0", b"1", b"2"], (seed, i)
    assert sorted(len(v) for v in (await _reply_log(fl, "kcall")).values()) == [s + 3 for s in sizes], seed


def _blocking_call(endpoint):
    import fluvial.sync

    with fluvial.sync.connect(endpoint=endpoint) as fl:
        with fl.call("syncup") as (sink, source):
            sink.send(b"x")
            sink.send("yz", input=0).wait()
            sink.close()
            out = [r.value for r in source]
        with pytest.raises(ProcessorCallError, match="no good: boom"):
            with fl.call("syncup") as (sink, source):
                sink.send(b"boom")
                list(source)  # iterating ends the input first
    return out


async def test_a_blocking_call_from_fluvial_sync(cluster, fl, new_topic, fn_dir):
    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "syncup", "upper")
        async with trio.open_nursery() as n:
            n.start_soon(run_processor, fl, "syncup")
            assert await trio.to_thread.run_sync(_blocking_call, cluster.endpoint) == [b"X", b"YZ"]
            n.cancel_scope.cancel()


async def test_a_caller_that_fails_withdraws_its_call(fl, new_topic, fn_dir):
    class Oops(Exception):
        pass

    with trio.fail_after(TIMEOUT):
        await _create(fl, new_topic, fn_dir, "wd", "upper")
        with pytest.raises(Oops):
            async with fl.call("wd") as (sink, _):
                withdrawn = sink.call_id
                await sink.send(b"never")
                raise Oops()
        async with trio.open_nursery() as n:
            n.start_soon(run_processor, fl, "wd")
            assert [r.value for r in await _call(fl, "wd", [b"after"])] == [b"AFTER"]
            n.cancel_scope.cancel()
        log = await _reply_log(fl, "wd")
        assert withdrawn.encode() not in log and list(log.values()) == [[b"AFTER"]]
