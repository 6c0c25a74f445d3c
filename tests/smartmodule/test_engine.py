"""The engine against real (WAT-built) SmartModules: every transform kind, init and params, the
accumulator, the compile cache, and the hostile modules each failing with its own error code."""

from __future__ import annotations

import time

import pytest

from fluvial.errors import ErrorCode
from fluvial.protocol.record import encode_records
from fluvial.smartmodule import abi
from fluvial.smartmodule.engine import Engine, Limits, SmartModuleFailure
from smartmodule.modules import wasm, wasm_gz, wat

V = 24


def section(*values, keys=None) -> bytes:
    recs = [(keys[i] if keys else None, v) for i, v in enumerate(values)]
    return encode_records(recs)[0]


def run(name, values, *, params=None, acc=None, engine=None, base=100, version=V):
    inst = (engine or Engine()).instantiate(wasm(name), params, version, acc)
    return inst, inst.transform_batch(base, section(*values), 1_700_000_000_000)


def test_filter_keeps_matching_records_with_their_offset_deltas():
    _, out = run("filter", [b"apple", b"kiwi", b"banana", b"fig"])
    assert [(r.offset_delta, r.value) for r in out.records] == [(0, b"apple"), (2, b"banana")]
    assert out.error is None


def test_map_keeps_keys_and_offsets():
    inst = Engine().instantiate(wasm("map"), {}, V)
    out = inst.transform_batch(0, section(b"ab", b"Cd", keys=[b"k1", None]), 0)
    assert [(r.offset_delta, r.key, r.value) for r in out.records] == [(0, b"k1", b"AB"), (1, None, b"CD")]
    assert inst.kind == "map"


def test_filter_map_and_array_map():
    _, out = run("filter_map", [b"ab", b"abc", b"abcd"])
    assert [(r.offset_delta, r.value) for r in out.records] == [(0, b"abab"), (2, b"abcdabcd")]
    _, out = run("array_map", [b"a,b", b"c", b",d"])
    assert [(r.offset_delta, r.value) for r in out.records] == [
        (0, b"a"), (0, b"b"), (1, b"c"), (2, b""), (2, b"d")]


def test_aggregate_carries_the_accumulator_across_batches():
    inst, out = run("aggregate", [b"a", b"b"], acc=b"x")
    assert [r.value for r in out.records] == [b"xa", b"xab"]
    out = inst.transform_batch(2, section(b"c"), 0)
    assert [r.value for r in out.records] == [b"xabc"]
    assert inst.accumulator == b"xabc"


def test_init_gets_the_params():
    _, out = run("filter_param", [b"red", b"green", b"blue"], params={"needle": "e"})
    assert [r.value for r in out.records] == [b"red", b"green", b"blue"]
    _, out = run("filter_param", [b"red", b"green", b"blue"], params={"needle": "ee"})
    assert [r.value for r in out.records] == [b"green"]


def test_init_error_is_a_chain_init_error_with_the_module_hint():
    with pytest.raises(SmartModuleFailure) as e:
        Engine().instantiate(wasm("filter_param"), {}, V)
    assert e.value.error.code == ErrorCode.SmartModuleChainInitError
    assert "missing needle" in e.value.error.message


def test_gzip_raw_and_wat_payloads_compile_once_per_content():
    eng = Engine()
    a = eng.module(wasm("map"))
    assert eng.module(wasm_gz("map")) is a  # same bytes once unzipped: cached
    assert eng.compiles == 1
    eng.module(wat("map").encode())  # WAT text is other bytes: compiled again
    eng.module(wasm("filter"))
    assert eng.compiles == 3


def test_not_wasm_is_invalid():
    with pytest.raises(SmartModuleFailure) as e:
        Engine().module(b"hello, not a module")
    assert e.value.error.code == ErrorCode.SmartModuleInvalid
    with pytest.raises(SmartModuleFailure) as e:
        Engine().module(b"\x00asm\x01\x00\x00\x00garbage")
    assert e.value.error.code == ErrorCode.SmartModuleInvalid


def test_missing_transform_is_a_chain_init_error():
    with pytest.raises(SmartModuleFailure) as e:
        Engine().instantiate(wasm("no_transform"), {}, V)
    assert e.value.error.code == ErrorCode.SmartModuleChainInitError


def test_infinite_loop_runs_out_of_fuel():
    inst = Engine(Limits(fuel=5_000_000)).instantiate(wasm("infinite_loop"), {}, V)
    t = time.monotonic()
    with pytest.raises(SmartModuleFailure) as e:
        inst.transform_batch(7, section(b"a"), 0)
    assert time.monotonic() - t < 10
    assert e.value.error.code == ErrorCode.SmartModuleRuntimeError
    assert e.value.error.args[0].offset == 7
    assert "all fuel consumed" in e.value.error.message


def test_memory_hog_hits_the_memory_limit():
    inst = Engine(Limits(memory_bytes=4 << 20)).instantiate(wasm("memory_hog"), {}, V)
    with pytest.raises(SmartModuleFailure) as e:
        inst.transform_batch(0, section(b"a"), 0)
    assert e.value.error.code == ErrorCode.SmartModuleMemoryLimitExceeded
    assert e.value.error.args[1] == 4 << 20
    assert inst.memory.data_len(inst.store) <= 4 << 20


@pytest.mark.parametrize("name", ["garbage", "trap"])
def test_garbage_and_traps_are_runtime_errors(name):
    inst = Engine().instantiate(wasm(name), {}, V)
    with pytest.raises(SmartModuleFailure) as e:
        inst.transform_batch(3, section(b"a"), 0)
    assert e.value.error.code == ErrorCode.SmartModuleRuntimeError
    # the instance is still usable for a report; a new batch fails the same way, nothing hangs
    with pytest.raises(SmartModuleFailure):
        inst.transform_batch(4, section(b"b"), 0)


def test_negative_status_is_a_runtime_error():
    inst = Engine().instantiate(wasm("aggregate"), {}, 22)  # the module refuses versions < 23
    with pytest.raises(SmartModuleFailure) as e:
        inst.transform_batch(0, section(b"a"), 0)
    assert e.value.error.code == ErrorCode.SmartModuleRuntimeError
    assert "decoding base input" in e.value.error.message


def test_wasi_imports_are_satisfied():
    """Modules built for wasm32-wasip1 (what ``smdk build`` makes) import WASI functions."""
    text = wat("map").replace(
        '(import "env" "copy_records"',
        '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))\n'
        '(import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))\n(import "env" "copy_records"', 1)
    inst = Engine().instantiate(text.encode(), {}, V)
    assert [r.value for r in inst.transform_batch(0, section(b"wasi"), 0).records] == [b"WASI"]


def test_unknown_imports_fail_the_chain_init():
    text = wat("map").replace('(import "env" "copy_records"',
                              '(import "env" "no_such_host_function" (func))\n(import "env" "copy_records"', 1)
    with pytest.raises(SmartModuleFailure) as e:
        Engine().instantiate(text.encode(), {}, V)
    assert e.value.error.code == ErrorCode.SmartModuleChainInitError
