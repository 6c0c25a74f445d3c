"""SmartModules run by the SPU on StreamFetch, through fluvial's own client: every kind, chains,
params and init, the aggregate's state across batches, AdHoc and Predefined modules, and bad or
hostile modules failing their own stream with their error code while the SPU serves the rest."""

from __future__ import annotations

import pytest
import trio

from fluvial import Offset
from fluvial.client.smartmodule import SmartModule
from fluvial.errors import ErrorCode, FluvialError
from smartmodule.modules import wasm, wasm_gz, write_wasm

TIMEOUT = 30
WORDS = [b"apple", b"kiwi", b"banana", b"fig", b"pear"]


async def consume(fl, topic, chain, **kw):
    async with fl.consumer(topic, continuous=False, smartmodules=chain, **kw) as c:
        return [(r.offset, r.value) async for r in c]


async def test_filter_adhoc_keeps_source_offsets(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS)
        got = await consume(fl, topic, [SmartModule(wasm=wasm("filter"))])
        assert got == [(0, b"apple"), (2, b"banana"), (4, b"pear")]


async def test_map_from_a_file_path(fl, new_topic, tmp_path):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS[:2])
        got = await consume(fl, topic, [write_wasm("map", tmp_path)])
        assert got == [(0, b"APPLE"), (1, b"KIWI")]


async def test_filter_map_and_array_map(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic([b"ab", b"abc", b"x,y"])
        assert await consume(fl, topic, [SmartModule(wasm=wasm("filter_map"))]) == [(0, b"abab")]
        got = await consume(fl, topic, [SmartModule(wasm=wasm("array_map"))])
        assert [v for _, v in got] == [b"ab", b"abc", b"x", b"y"]


async def test_chain_runs_in_order(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS)
        got = await consume(fl, topic, [SmartModule(wasm=wasm("filter")), SmartModule(wasm=wasm("map"))])
        assert got == [(0, b"APPLE"), (2, b"BANANA"), (4, b"PEAR")]
        # map first: upper case has no "a", so the filter keeps nothing and the stream still ends
        assert await consume(fl, topic, [SmartModule(wasm=wasm("map")), SmartModule(wasm=wasm("filter"))]) == []


async def test_aggregate_state_spans_batches_and_starts_from_the_initial_value(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic([b"a", b"b", b"c"])  # one batch per send
        got = await consume(fl, topic, [SmartModule(wasm=wasm("aggregate"), aggregate_initial="x")])
        assert got == [(0, b"xa"), (1, b"xab"), (2, b"xabc")]


async def test_params_reach_init(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS)
        got = await consume(fl, topic, [SmartModule(wasm=wasm("filter_param"), params={"needle": "an"})])
        assert got == [(2, b"banana")]


async def test_predefined_module_created_raw_and_gzipped(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS[:3])
        await fl.admin.create_smartmodule("upper", wasm("map"))
        await fl.admin.create_smartmodule("has-a", wasm_gz("filter"))
        infos = await fl.admin.list_smartmodules()
        assert [i.name for i in infos] == ["has-a", "upper"] and all(i.size > 0 for i in infos)
        assert await consume(fl, topic, ["has-a", "upper"]) == [(0, b"APPLE"), (2, b"BANANA")]
        await fl.admin.delete_smartmodule("upper")
        with pytest.raises(FluvialError) as e:
            await consume(fl, topic, ["upper"])
        assert e.value.code == ErrorCode.SmartModuleNotFound
        with pytest.raises(FluvialError) as e:  # the SC checks the magic: raw or gzipped wasm only
            await fl.admin.create_smartmodule("junk", b"not a module")
        assert e.value.code == ErrorCode.SmartModuleInvalid
        assert [i.name for i in await fl.admin.list_smartmodules()] == ["has-a"]


async def test_live_tail_through_a_filter(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic()
        async with fl.consumer(topic, smartmodules=[SmartModule(wasm=wasm("filter"))]) as c:
            async with fl.producer(topic) as p:
                for v in [b"kiwi", b"fig", b"plum", b"date"]:
                    await p.send(v)
            r = await c.__anext__()
            assert (r.offset, r.value) == (3, b"date")


@pytest.mark.parametrize("payload, code", [
    (b"not a wasm module", ErrorCode.SmartModuleInvalid),
    (wasm("no_transform"), ErrorCode.SmartModuleChainInitError),
    (wasm("trap"), ErrorCode.SmartModuleRuntimeError),
    (wasm("garbage"), ErrorCode.SmartModuleRuntimeError),
    (wasm("memory_hog"), ErrorCode.SmartModuleMemoryLimitExceeded),
    (wasm("infinite_loop"), ErrorCode.SmartModuleRuntimeError),
], ids=["not-wasm", "no-transform", "trap", "garbage", "memory-hog", "infinite-loop"])
async def test_bad_modules_fail_their_stream_and_the_spu_serves_on(fl, new_topic, payload, code):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS[:2])
        with pytest.raises(FluvialError) as e:
            await consume(fl, topic, [SmartModule(wasm=payload)])
        assert e.value.code == code
        assert await consume(fl, topic, []) == [(0, b"apple"), (1, b"kiwi")]
        assert await consume(fl, topic, [SmartModule(wasm=wasm("map"))]) == [(0, b"APPLE"), (1, b"KIWI")]


async def test_init_failure_and_unknown_name(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS[:1])
        with pytest.raises(FluvialError) as e:
            await consume(fl, topic, [SmartModule(wasm=wasm("filter_param"))])
        assert e.value.code == ErrorCode.SmartModuleChainInitError
        assert "missing needle" in str(e.value)
        with pytest.raises(FluvialError) as e:
            await consume(fl, topic, ["no-such-module"])
        assert e.value.code == ErrorCode.SmartModuleNotFound


async def _produce_raw(fl, topic, values, chain):
    from fluvial.protocol.record import encode_batch
    from fluvial.protocol.spu_api import (
        Isolation, PartitionProduceData, ProduceRequest, TopicProduceData,
    )

    _, conn = await fl.leader_connection(topic, 0)
    req = ProduceRequest(None, Isolation.ReadUncommitted, 5000, [TopicProduceData(topic, [
        PartitionProduceData(0, encode_batch(values))])], [m.invocation() for m in chain])
    resp = await conn.call(req, timeout=20)
    return resp.responses[0].partitions[0]


async def test_produce_side_chain_transforms_before_storing(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic()
        chain = [SmartModule(wasm=wasm("filter")), SmartModule(wasm=wasm("map"))]
        assert (await _produce_raw(fl, topic, [b"apple", b"kiwi", b"pear"], chain)).error_code.ok
        empty = await _produce_raw(fl, topic, [b"kiwi"], chain)  # filtered out: OK, nothing stored
        assert empty.error_code.ok
        refused = await _produce_raw(fl, topic, [b"fig"], [SmartModule(wasm=wasm("trap"))])
        assert refused.error_code.code == ErrorCode.SmartModuleRuntimeError
        assert await consume(fl, topic, []) == [(0, b"APPLE"), (1, b"PEAR")]


@pytest.mark.parametrize("version, field", [(14, "wasm_module"), (17, "smartmodule"), (18, "smartmodules")])
async def test_legacy_stream_fetch_fields(fl, new_topic, version, field):
    """Older clients: ``wasm_module`` (v11-18, gzipped wasm, run by its export), ``smartmodule``
    (v16-18), ``smartmodules`` (v18+); each answered at the request's version (a v14 module
    input has params but no join record or timestamp)."""
    from fluvial.protocol.codec import DecodeError
    from fluvial.protocol.record import decode_record_set
    from fluvial.protocol.spu_api import Isolation, StreamFetchRequest
    from fluvial.smartmodule.abi import decode_output_batches

    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS[:3])
        inv = SmartModule(wasm=wasm("filter")).invocation()
        extra = {"wasm_module": {"wasm_module": inv.wasm.module},
                 "smartmodule": {"smartmodule": inv},
                 "smartmodules": {"smartmodules": [inv]}}[field]
        req = StreamFetchRequest(topic, 0, 0, 1 << 20, Isolation.ReadUncommitted, **extra)
        _, conn = await fl.leader_connection(topic, 0)
        async with conn.open_stream(req, version) as stream:
            resp = await stream.__anext__()
        part = resp.partition
        assert part.error_code.ok
        assert part.next_filter_offset == (3 if version >= 11 else 0)
        got = decode_output_batches(part.records, 0, len(part.records))
        assert [(r.offset, r.value) for r in got] == [(0, b"apple"), (2, b"banana")]
        with pytest.raises(DecodeError):  # the plain decoder refuses them: fewer records than their span
            decode_record_set(part.records)


async def test_a_long_running_module_stalls_no_other_stream(fl, new_topic, monkeypatch):
    """Modules run in worker threads: while one stream's module loops (with fuel for seconds),
    the SPU serves other streams, plain and SmartModule, at once; then the loop fails its own."""
    from fluvial.smartmodule.engine import Limits
    from fluvial.spu import smartmodules

    monkeypatch.setattr(smartmodules, "Limits", lambda: Limits(fuel=4_000_000_000))
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS[:2])
        failed = trio.Event()
        codes = []

        async def looping():
            with pytest.raises(FluvialError) as e:
                await consume(fl, topic, [SmartModule(wasm=wasm("infinite_loop"))])
            codes.append(e.value.code)
            failed.set()

        async with trio.open_nursery() as n:
            n.start_soon(looping)
            while not any(e.compiles for e in smartmodules._ENGINES.values()):  # poll: its chain is built
                await trio.sleep(0.01)
            started = trio.current_time()
            assert await consume(fl, topic, []) == [(0, b"apple"), (1, b"kiwi")]
            assert await consume(fl, topic, [SmartModule(wasm=wasm("map"))]) == [(0, b"APPLE"), (1, b"KIWI")]
            served_in = trio.current_time() - started
            assert not failed.is_set(), "the looping module ended before the others were served"
            assert served_in < 2.0
        assert codes == [ErrorCode.SmartModuleRuntimeError]


async def test_a_large_adhoc_module_fits_a_stream_fetch(fl, new_topic):
    """An AdHoc module of a few MiB (a real Rust module can be) is accepted: StreamFetch frames
    may be larger than the SPU's other control requests."""
    import os

    from smartmodule.modules import wat

    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS[:1])
        blob = "".join(f"\\{b:02x}" for b in os.urandom(2 << 20))  # incompressible: ~2 MiB gzipped
        text = wat("map").rstrip()[:-1] + f'\n(data "{blob}"))\n'  # a passive data segment
        module = SmartModule(wasm=text.encode())
        assert len(module.invocation().wasm.module) > 2 << 20
        assert await consume(fl, topic, [module]) == [(0, b"APPLE")]


async def test_a_module_error_comes_after_its_partial_records(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic) as p:  # one batch: the error comes mid-batch
            await p.send_many([b"a", b"b", b"boom", b"c"])
        got = []
        with pytest.raises(FluvialError) as e:
            async with fl.consumer(topic, continuous=False,
                                   smartmodules=[SmartModule(wasm=wasm("filter_error"))]) as c:
                async for r in c:
                    got.append((r.offset, r.value))
        assert got == [(0, b"a"), (1, b"b")]
        assert e.value.code == ErrorCode.SmartModuleRuntimeError and "boom found" in str(e.value)


async def test_lookback_feeds_look_back_the_last_records(fl, new_topic):
    with trio.fail_after(TIMEOUT):
        topic = await new_topic(WORDS)
        module = wasm("lookback")
        got = await consume(fl, topic, [SmartModule(wasm=module, lookback_last=2)], offset=Offset.absolute(4))
        assert got == [(4, b"pear2")]
        got = await consume(fl, topic, [SmartModule(wasm=module, lookback_last=0)], offset=Offset.absolute(4))
        assert got == [(4, b"pear0")]  # no records: look_back got an empty input
        assert await consume(fl, topic, [SmartModule(wasm=module)], offset=Offset.absolute(4)) == [(4, b"pear0")]
        with pytest.raises(FluvialError) as e:
            await consume(fl, topic, [SmartModule(wasm=module, lookback_last=4)])
        assert e.value.code == ErrorCode.SmartModuleLookBackError and "too much history" in str(e.value)
        got = await consume(fl, topic, [SmartModule(wasm=module, lookback_last=3, lookback_age=3600)],
                            offset=Offset.absolute(4))
        assert got == [(4, b"pear3")]  # the last 3, all of them within the hour
        with pytest.raises(FluvialError) as e:  # the age alone: all 5 records of the last hour
            await consume(fl, topic, [SmartModule(wasm=module, lookback_age=3600)])
        assert e.value.code == ErrorCode.SmartModuleLookBackError
        got = await consume(fl, topic, [SmartModule(wasm=module, lookback_age=0.000001)],
                            offset=Offset.absolute(4))
        assert got == [(4, b"pear0")]  # nothing is that recent


async def test_records_with_headers_reach_a_module_in_fluvio_s_encoding(fl, new_topic, monkeypatch):
    """A module decodes records as Fluvio writes them (header count 0, nothing after it): the SPU
    strips fluvial's record headers before the chain, or a module built with Fluvio's SDK would
    misparse the batch."""
    import fluvial.spu.public as spu_public
    from fluvial.protocol.record_headers import has_headers

    seen = []
    real = spu_public.run_chain

    async def spy(chain, data, start, span_from):
        seen.append(has_headers(data))
        return await real(chain, data, start, span_from)

    monkeypatch.setattr(spu_public, "run_chain", spy)
    with trio.fail_after(TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic) as p:
            for v in WORDS[:3]:
                await p.send(v, headers={"source": b"test", "n": v})
        async with fl.consumer(topic, continuous=False) as c:
            assert [r.headers for r in [r async for r in c]][0]  # stored with headers
        got = await consume(fl, topic, [SmartModule(wasm=wasm("map"))])
        assert got == [(0, b"APPLE"), (1, b"KIWI"), (2, b"BANANA")]
        assert seen and not any(seen)
