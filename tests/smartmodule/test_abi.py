"""The SmartModule ABI bytes (pure): golden inputs per version, outputs decoded whole, cut short
and with trailing bytes, output batch framing, and the chain's offsets over stored batches."""

from __future__ import annotations

import gzip
import struct

import pytest

from fluvial.errors import ErrorCode
from fluvial.protocol.batch import read_header
from fluvial.protocol.codec import DecodeError, SmartModuleTransformRuntimeError
from fluvial.protocol.record import encode_batch, encode_records
from fluvial.smartmodule import abi
from fluvial.smartmodule.chain import Chain, ModuleSpec
from fluvial.smartmodule.engine import Engine
from smartmodule.modules import wasm

RECORDS = encode_records([b"a"])[0]  # i32 count 1 + one record


def test_input_v24_golden():
    assert abi.encode_input(5, RECORDS, 24, base_timestamp=7, params={"k": "v"}) == b"".join([
        struct.pack(">q", 5),                     # base_offset
        struct.pack(">i", len(RECORDS)), RECORDS,  # raw_bytes
        struct.pack(">q", 7),                     # base_timestamp (v22+); no params after v22
    ])


def test_input_v22_has_params_join_record_and_timestamp():
    assert abi.encode_input(5, RECORDS, 22, base_timestamp=7, params={"k": "v"}) == b"".join([
        struct.pack(">q", 5), struct.pack(">i", len(RECORDS)), RECORDS,
        b"\x00\x01" b"\x00\x01k" b"\x00\x01v",  # params: u16 count, key, value
        b"\x00",                                 # lookback None (v20+)
        struct.pack(">i", 0),                    # join_record (v16..22)
        struct.pack(">q", 7),                    # base_timestamp
    ])


def test_input_v18_and_aggregate_accumulator():
    assert abi.encode_input(1, RECORDS, 18, accumulator=b"acc") == b"".join([
        struct.pack(">q", 1), struct.pack(">i", len(RECORDS)), RECORDS,
        b"\x00\x00",             # params: none (no lookback before v20)
        struct.pack(">i", 0),    # join_record
        struct.pack(">i", 3), b"acc",
    ])


def test_init_input():
    assert abi.encode_init_input({"b": "2", "a": "1"}, 24) == b"\x00\x02\x00\x01a\x00\x011\x00\x01b\x00\x012\x00"


OUT = [abi.OutRecord(0, 0, b"k", b"v"), abi.OutRecord(2, 5, None, b"xyz")]


def _output(records, error=None, acc=None):
    w = bytearray(abi.encode_out_records(records))
    if error is None:
        w += b"\x00"
    else:
        w += b"\x01"
        error.wire_encode(w, 24)
    if acc is not None:
        w += struct.pack(">i", len(acc)) + acc
    return bytes(w)


def test_output_decodes_whole_and_leaves_trailing_bytes():
    err = SmartModuleTransformRuntimeError("bad", 3, 0, None, b"v")
    data = _output(OUT, err, b"AC")
    out = abi.decode_output(data + b"trailing", 24, aggregate=True)
    assert out.records == OUT and out.count == 2 and out.error == err and out.accumulator == b"AC"
    assert out.raw == abi.encode_out_records(OUT)


def test_output_cut_short_anywhere_is_a_decode_error():
    data = _output(OUT, None, b"AC")
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            abi.decode_output(data[:n], 24, aggregate=True)


def test_output_garbage():
    for junk in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x01\x7f", b"\x00\x00\x00\x00\x05"):
        with pytest.raises(DecodeError):
            abi.decode_output(junk, 24)


def test_frame_output_and_span_batch_read_back_at_source_offsets():
    section = abi.encode_out_records(OUT)
    batch = abi.frame_output(section, 2, 10, 4, 1000, 1005)
    h = read_header(batch)
    assert (h.base_offset, h.last_offset_delta) == (10, 4)
    span = abi.span_batch(15, 20)
    assert (read_header(span).base_offset, read_header(span).last_offset_delta) == (15, 4)
    got = abi.decode_output_batches(batch + span, 0, len(batch + span))
    assert got == [abi.Produced(10, 1000, b"k", b"v"), abi.Produced(12, 1005, None, b"xyz")]
    with pytest.raises(DecodeError):
        abi.decode_output_batches(batch[:-1], 0, len(batch) - 1)


def test_wasm_bytes():
    raw = wasm("map")
    assert abi.wasm_bytes(raw) == raw
    assert abi.wasm_bytes(gzip.compress(raw)) == raw
    for bad in (b"", b"hello", gzip.compress(b"hello"), b"\x1f\x8bnot gzip"):
        with pytest.raises(abi.ModuleError):
            abi.wasm_bytes(bad)
    with pytest.raises(abi.ModuleError):
        abi.wasm_bytes(gzip.compress(b"\x00asm" + bytes(100)), limit=50)


def _stored(*batches):
    return b"".join(encode_batch([(None, v) for v in values], base_offset=base, first_timestamp=1000)
                    for base, values in batches)


def test_chain_offsets_spans_and_a_start_inside_a_batch():
    chain = Chain(Engine(), [ModuleSpec(wasm("filter"))], 24)
    data = _stored((0, [b"x", b"y"]), (2, [b"a1", b"z", b"a2"]), (5, [b"q"]))
    r = chain.process(data, 0)
    assert (r.count, r.next_offset, r.covered) == (2, 6, 5)
    rs = r.record_set()
    heads = []
    pos = 0
    while pos < len(rs):
        h = read_header(rs, pos)
        heads.append((h.base_offset, h.last_offset_delta + 1))
        pos += h.size
    assert heads == [(0, 2), (2, 3), (5, 1)]  # span, records, span: every offset accounted for
    assert [(p.offset, p.value) for p in abi.decode_output_batches(rs, 0, len(rs))] == [(2, b"a1"), (4, b"a2")]
    r = chain.process(data, 3)  # starts inside the second batch: a2 only, spanning 3..4
    rs = r.record_set()
    assert [(p.offset, p.value) for p in abi.decode_output_batches(rs, 0, len(rs))] == [(4, b"a2")]
    assert read_header(rs).base_offset == 3


def test_chain_stops_at_a_failing_batch_with_its_error():
    chain = Chain(Engine(), [ModuleSpec(wasm("map")), ModuleSpec(wasm("trap"))], 24)
    r = chain.process(_stored((0, [b"a"]), (1, [b"b"])), 0)
    assert r.error.code == ErrorCode.SmartModuleRuntimeError and r.count == 0 and r.next_offset == 0
