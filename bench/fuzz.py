"""Fuzz fluvial's decoders in-process, then its servers over TCP while a client keeps working.

Part 1, in-process (``--cases``, default 1,000,000): valid inputs are generated from the wire types
themselves (every request of the SC, SPU and private APIs at random versions, every response,
record batches, records sections, compressed sections, streams of frames), mutated (bit flips,
interesting integers, truncation, insertion, splicing; batch CRCs are sometimes fixed up so the
records decoder is reached), and handed to the decoders. Anything but a clean result or a
``DecodeError`` is a crash. A few differential checks ride along: the fast Produce decoder must
agree with the generic one, a frame stream must split the same fed whole or in random chunks, a
record set that decodes must be what ``scan_valid_prefix`` finds valid, and a request that decodes
must re-encode to bytes that decode to the same request.

Part 2, live (``--live-frames``, default 10,000): ``fluvial cluster start`` in a temporary
FLUVIAL_HOME (1 SPU, ports chosen by the OS), a normal client producing and consuming on one topic
through ``fluvial.net.multiplexer`` (its latency is measured before and during the attack), and
fuzzers throwing mutated and garbage frames at the SC and SPU public and private ports. It reports
server processes that died or stopped answering, the servers' peak RSS (``VmHWM``), the client's
p50/p99, and internal errors the servers logged (a handler that raised).

Usage:
    python bench/fuzz.py                               # both parts
    python bench/fuzz.py --cases 200000 --skip-live    # decoders only
    python bench/fuzz.py --skip-inproc --live-frames 20000 --tls

Reproduce a crash: every finding prints its target and payload hex; ``replay(target, hex)`` runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from crc32c import crc32c

from fluvial.errors import PAYLOAD, Error, ErrorCode
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as spa
from fluvial.protocol.api import (
    RequestHeader, decode_request, decode_response, encode_request, encode_response,
)
from fluvial.protocol.batch import (
    CRC_OFFSET, CRC_START, HEADER_BYTES, PREAMBLE_BYTES, check_batch, iter_batches,
    scan_valid_prefix,
)
from fluvial.protocol.codec import (
    Bool, Bytes, DecodeError, Duration, EncodeError, Enum, ErrorCodeType, Int, Lazy, Map,
    MessageType, Opt, RawRecords, Reader, SmartModuleInitRuntimeError,
    SmartModuleTransformRuntimeError, Str, Union, VarintBytes, Vec, WireType, as_type,
)
from fluvial.protocol.connection import ClientProtocol
from fluvial.pids import pid_alive
from fluvial.protocol.frame import FrameDecoder
from fluvial.protocol.record import (
    Compression, ProducerRecord, compress, decode_batches, decode_records, decompress, encode_batch,
    encode_records,
)

REGISTRIES: dict[str, dict[int, type]] = {
    "sc": sa.SC_REQUESTS,
    "spu": spa.SPU_REQUESTS,
    "sc-private": ia.INTERNAL_SC_REQUESTS,
    "spu-private": ia.INTERNAL_SPU_REQUESTS,
}
TARGETS = (*REGISTRIES, "response", "batch", "records", "compressed", "frames")
# Decoders get this much at most: big enough for every seed, small enough that a forged length
# costs nothing.
MAX_FRAME_BYTES = 1 << 20
MAX_UNCOMPRESSED_BYTES = 1 << 20

# =============================================================================================
# Valid values from wire types


_STRINGS = ("", "a", "fuzz", "orders-1", "custom-spu-1", "Topic", "SPU", "Name", "Id", "é", "☃",
            "x" * 40, "-", "0", "a.b", "*")
_ALPHABET = "abcxyz019-_.éß☃ \x00"


class Gen:
    """Random valid Python values for wire types (``value(t)``), driven by ``random.Random``."""

    def __init__(self, rnd: random.Random):
        self.rnd = rnd

    def integer(self, bits: int, signed: bool) -> int:
        rnd = self.rnd
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        roll = rnd.random()
        if roll < 0.5:
            return rnd.randint(0, min(10, hi))
        if roll < 0.75:
            return rnd.choice((lo, hi, -1 if signed else hi - 1, 1, 0, min(hi, 127), min(hi, 128)))
        return rnd.randint(lo, hi)

    def text(self) -> str:
        rnd = self.rnd
        if rnd.random() < 0.6:
            return rnd.choice(_STRINGS)
        return "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(0, 12)))

    def blob(self, max_size: int = 16) -> bytes:
        return self.rnd.randbytes(self.rnd.randint(0, max_size))

    def count(self, depth: int) -> int:
        if depth > 4:
            return 0
        return self.rnd.choice((0, 1, 1, 2, 3))

    def value(self, t: Any, depth: int = 0) -> Any:  # noqa: C901 - one branch per wire type
        rnd = self.rnd
        if not isinstance(t, WireType):
            t = as_type(t)
        if isinstance(t, Int):
            fmt = t.st.format[-1]
            if fmt == "d":
                return rnd.choice((0.0, 1.5, -2.25, 1e300))
            bits = {"b": 8, "h": 16, "i": 32, "q": 64}[fmt.lower()]
            return self.integer(bits, fmt.islower())
        if isinstance(t, Bool):
            return rnd.random() < 0.5
        if isinstance(t, Str):
            return self.text()
        if isinstance(t, (Bytes, VarintBytes)):
            return self.blob()
        if isinstance(t, RawRecords):
            return random_record_set(rnd)
        if isinstance(t, Duration):
            return rnd.randint(0, 10**6) + rnd.randint(0, 999) / 1000
        if isinstance(t, Opt):
            return None if rnd.random() < 0.4 or depth > 5 else self.value(t.inner, depth + 1)
        if isinstance(t, Vec):
            return [self.value(t.inner, depth + 1) for _ in range(self.count(depth))]
        if isinstance(t, Map):
            return {self.value(t.key, depth + 1): self.value(t.value, depth + 1)
                    for _ in range(self.count(depth))}
        if isinstance(t, Enum):
            return rnd.choice(list(t.cls))
        if isinstance(t, Union):
            return self.value(rnd.choice(list(t.variants.values())), depth + 1)
        if isinstance(t, Lazy):
            return self.value(t.get(), depth + 1)
        if isinstance(t, MessageType):
            return t.cls(**{name: self.value(ft, depth + 1) for name, ft, _lo, _hi in t.cls.WIRE_FIELDS})
        if isinstance(t, ErrorCodeType):
            return self.error()
        if isinstance(t, spa.Acks):
            return rnd.choice(list(spa.Isolation))
        if isinstance(t, spa.TimeoutMs):
            return rnd.choice((0, 1500, 0x7FFFFFFF, rnd.randint(0, 0x7FFFFFFF)))
        if isinstance(t, so.SemverStr):
            return rnd.choice(("0.1.0", "1.2.3-rc.1+b5", "18446744073709551615.0.0"))
        if isinstance(t, so.CustomSpuKeyType):
            return self.text() if rnd.random() < 0.5 else self.integer(32, True)
        if isinstance(t, so.MetadataType):
            return so.Metadata(self.text(), self.value(t.spec_t, depth + 1),
                               self.value(t.status_t, depth + 1))
        if isinstance(t, sa.CreateRequestType):
            return sa.CreateRequest(self.value(sa.CommonCreateRequest, depth + 1),
                                    self.value(t.spec_t, depth + 1))
        if isinstance(t, sa.DeleteRequestType):
            return sa.DeleteRequest(self.value(t.key_t, depth + 1), rnd.random() < 0.5)
        if isinstance(t, sa.UpdateRequestType):
            return sa.UpdateRequest(self.value(t.key_t, depth + 1), self.value(t.action_t, depth + 1))
        if isinstance(t, sa.WatchMessageType):
            return sa.Message(rnd.choice(list(sa.MsgType)), self.value(t.content_t, depth + 1))
        if isinstance(t, sa.MetadataUpdateType):
            return sa.MetadataUpdate(self.integer(64, True), self.value(t.changes_t, depth + 1),
                                     self.value(t.all_t, depth + 1))
        if hasattr(t, "types"):  # codec._Tuple
            return tuple(self.value(x, depth + 1) for x in t.types)
        if t.name == "ReplicaKey":  # codec._ReplicaKeyTuple
            return (self.text(), self.integer(32, False))
        return t.default()

    def error(self) -> Error:
        rnd = self.rnd
        code = ErrorCode.None_ if rnd.random() < 0.5 else rnd.choice(list(ErrorCode))
        args = []
        for kind in PAYLOAD.get(code, ()):
            if kind == "str":
                args.append(self.text())
            elif kind == "opt_str":
                args.append(None if rnd.random() < 0.5 else self.text())
            elif kind == "i64":
                args.append(self.integer(64, True))
            elif kind == "u64":
                args.append(self.integer(64, False))
            elif kind == "replica_key":
                args.append((self.text(), self.integer(32, False)))
            elif kind == "request_kind":
                args.append(0)
            elif kind == "sm_runtime":
                args.append(self.value(SmartModuleTransformRuntimeError))
            elif kind == "sm_init":
                args.append(self.value(SmartModuleInitRuntimeError))
        return Error(code, tuple(args))

    # ------------------------------------------------------------------------ whole messages

    def version(self, cls: type) -> int:
        lo, hi = cls.MIN_API_VERSION, cls.MAX_API_VERSION
        return self.rnd.choice((lo, hi, cls.DEFAULT_API_VERSION, self.rnd.randint(lo, hi)))

    def request(self, cls: type) -> Any:
        if issubclass(cls, sa.TypeBufferMessage):
            return self.type_buffer(cls)
        return self.value(cls)

    def type_buffer(self, cls: type) -> Any:
        labels = [label for label in sorted(so.SPEC_BY_LABEL) if cls._payload_type(label) is not None]
        label = self.rnd.choice(labels)
        return cls(label, self.value(cls._payload_type(label), 1))


def random_records(rnd: random.Random) -> list[ProducerRecord]:
    return [ProducerRecord(rnd.randbytes(rnd.choice((0, 1, 5, 40))),
                           None if rnd.random() < 0.5 else rnd.randbytes(rnd.randint(0, 4)),
                           rnd.choice((0, 0, 1, 300, -5)))
            for _ in range(rnd.choice((1, 1, 2, 3, 7)))]


def random_batch(rnd: random.Random) -> bytes:
    return encode_batch(random_records(rnd), base_offset=rnd.choice((0, 0, 5, 2**40)),
                        first_timestamp=rnd.choice((0, -1, 1_700_000_000_000)),
                        compression=rnd.choice(list(Compression)),
                        partition_leader_epoch=rnd.choice((-1, 0, 3)))


def random_record_set(rnd: random.Random) -> bytes:
    return b"".join(random_batch(rnd) for _ in range(rnd.choice((0, 1, 1, 1, 2))))


# =============================================================================================
# Seeds: valid inputs per target


@dataclass(frozen=True, slots=True)
class Seed:
    """A valid input for ``target``. ``keep`` is how many leading bytes some mutations leave
    alone (a request header), ``cls``/``version`` say how to decode a response or which
    compression code a compressed section has."""

    target: str
    data: bytes
    keep: int = 0
    cls: type | None = None
    version: int = 0


def _header_bytes(payload: bytes) -> int:
    r = Reader(payload)
    RequestHeader.read(r)
    return r.pos


def build_corpus(rnd: random.Random, per_class: int = 6) -> list[Seed]:
    """Valid seeds for every target: ``per_class`` instances of every request and response
    class, and as many batches, records sections, compressed sections and frame streams."""
    gen = Gen(rnd)
    seeds: list[Seed] = []
    request_payloads: list[bytes] = []
    for target, registry in REGISTRIES.items():
        for cls in registry.values():
            made = 0
            for _attempt in range(per_class * 4):
                if made >= per_class:
                    break
                try:
                    req = gen.request(cls)
                    version = gen.version(cls)
                    frame = encode_request(req, rnd.randint(0, 2**31 - 1), version,
                                           gen.text())
                except EncodeError:
                    continue
                payload = frame[4:]
                seeds.append(Seed(target, payload, keep=_header_bytes(payload)))
                request_payloads.append(frame)
                made += 1
                # and its response, decoded by a client with the same version
                try:
                    resp_cls = cls.Response
                    resp = (gen.type_buffer(resp_cls) if issubclass(resp_cls, sa.TypeBufferMessage)
                            else gen.value(resp_cls))
                    seeds.append(Seed("response", encode_response(resp, 7, version)[4:], keep=4,
                                      cls=resp_cls, version=version))
                except EncodeError:
                    pass
    for _ in range(per_class * 8):
        seeds.append(Seed("batch", random_record_set(rnd) or random_batch(rnd)))
        section = encode_records(random_records(rnd))[0]
        seeds.append(Seed("records", section))
        codec = rnd.choice([c for c in Compression if c])
        seeds.append(Seed("compressed", compress(codec, section), version=int(codec)))
        frames = b"".join(rnd.choice(request_payloads) for _ in range(rnd.randint(1, 4)))
        seeds.append(Seed("frames", frames))
    return seeds


# =============================================================================================
# Mutations

_INTERESTING_8 = (0x00, 0x01, 0x7F, 0x80, 0xFF)
_INTERESTING_16 = (0x0000, 0x7FFF, 0x8000, 0xFFFF, 0x0100)
_INTERESTING_32 = (0x00000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00010000, 0x000000FF,
                   0x00100000, 0x04000000)
_INTERESTING_64 = (0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF)


def mutate(data: bytes, rnd: random.Random, *, keep: int = 0,
           splice: Callable[[], bytes] | None = None) -> bytes:
    """One to eight random edits of ``data``; with ``keep``, most edits spare the first ``keep``
    bytes (so a request header stays valid and the body decoder is reached)."""
    b = bytearray(data)
    for _ in range(rnd.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        n = len(b)
        lo = min(keep, n) if keep and rnd.random() < 0.7 else 0
        op = rnd.randrange(12)
        if n <= lo:
            op = 6  # only insertion makes sense
        if op == 0:  # flip a bit
            i = rnd.randrange(lo, n)
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:  # random byte
            b[rnd.randrange(lo, n)] = rnd.randrange(256)
        elif op == 2:  # interesting byte
            b[rnd.randrange(lo, n)] = rnd.choice(_INTERESTING_8)
        elif op in (3, 4, 5):  # interesting big-endian integer (lengths, counts, tags, offsets)
            width, values = ((2, _INTERESTING_16), (4, _INTERESTING_32), (8, _INTERESTING_64))[op - 3]
            if n - lo >= width:
                i = rnd.randrange(lo, n - width + 1)
                v = rnd.choice(values) if rnd.random() < 0.7 else (
                    int.from_bytes(b[i:i + width], "big") + rnd.choice((-1, 1, -2, 2, 16))) % (1 << (8 * width))
                b[i:i + width] = v.to_bytes(width, "big")
        elif op == 6:  # insert random bytes
            i = rnd.randint(lo, n)
            b[i:i] = rnd.randbytes(rnd.choice((1, 1, 2, 4, 16)))
        elif op == 7:  # delete a range
            i = rnd.randrange(lo, n)
            del b[i:i + rnd.choice((1, 1, 2, 4, 16))]
        elif op == 8:  # truncate
            del b[rnd.randint(lo, n):]
        elif op == 9:  # duplicate a range
            i = rnd.randrange(lo, n)
            j = min(n, i + rnd.choice((1, 4, 16, 64)))
            b[j:j] = b[i:j]
        elif op == 10:  # append garbage
            b += rnd.randbytes(rnd.choice((1, 4, 16, 200)))
        elif op == 11 and splice is not None:  # splice in a piece of another seed
            other = splice()
            if other:
                i, j = sorted((rnd.randrange(len(other)), rnd.randrange(len(other) + 1)))
                at = rnd.randint(lo, n)
                b[at:at + rnd.randint(0, 8)] = other[i:j]
    return bytes(b)


def rebatch(section: bytes, rnd: random.Random) -> bytes:
    """A batch with a valid header, compression and CRC around a (mutated) records section, so
    that the records decoder sees it after decompression. last_offset_delta matches the count the
    section starts with, when it has one."""
    codec = rnd.choice(list(Compression))
    body = compress(codec, section)
    count = struct.unpack_from(">i", section)[0] if len(section) >= 4 else 1
    header = bytearray(encode_batch([b"x"], compression=codec)[:HEADER_BYTES])
    struct.pack_into(">i", header, 8, len(header) - PREAMBLE_BYTES + len(body))
    struct.pack_into(">I", header, CRC_START + 2, (count - 1) & 0xFFFFFFFF)  # last_offset_delta
    return fix_crcs(bytes(header) + body)


def fix_crcs(data: bytes) -> bytes:
    """Recompute the CRC of every batch whose declared length fits, so the records are decoded."""
    b = bytearray(data)
    pos = 0
    while len(b) - pos >= HEADER_BYTES:
        (length,) = struct.unpack_from(">i", b, pos + 8)
        size = PREAMBLE_BYTES + length
        if length < 0 or pos + size > len(b) or size < HEADER_BYTES:
            break
        struct.pack_into(">I", b, pos + CRC_OFFSET, crc32c(memoryview(b)[pos + CRC_START:pos + size]))
        pos += size
    return bytes(b)


# =============================================================================================
# Decoders and checks


class Mismatch(AssertionError):
    """A differential check failed: two ways of decoding disagree."""


def _decode_request(registry: dict[int, type], data: bytes, roundtrip: bool) -> None:
    decode = sa.decode_sc_request if registry is sa.SC_REQUESTS else (
        lambda p: decode_request(p, registry))
    header, req = decode(data)
    if isinstance(req, spa.ProduceRequest):
        r = Reader(data, _header_bytes(data))
        generic = spa.ProduceRequest.generic_wire_decode(r, header.api_version)
        if generic != req:
            raise Mismatch("the fast and the generic Produce decoders disagree")
    if roundtrip and not (isinstance(req, sa.TypeBufferMessage) and header.api_version < sa.DYN_OBJ):
        # (an Update below DYN_OBJ decodes, as Fluvio's does, but fluvial never encodes one)
        again = encode_request(req, header.correlation_id, header.api_version, header.client_id)
        header2, req2 = decode(again[4:])
        if (header2, req2) != (header, req):
            raise Mismatch(f"decode(encode(x)) != x for {type(req).__name__} v{header.api_version}")


def _produce_generic_only(data: bytes) -> None:
    """When the fast decoder rejects a Produce body, the generic one must reject it too."""
    try:
        header = RequestHeader.read(Reader(data))
    except DecodeError:
        return
    if header.api_key != spa.SpuApiKey.Produce or not 0 <= header.api_version <= spa.COMMON_VERSION:
        return
    try:
        spa.ProduceRequest.generic_wire_decode(Reader(data, _header_bytes(data)), header.api_version)
    except DecodeError:
        return
    raise Mismatch("the generic Produce decoder accepts what the fast one rejects")


def _frames(data: bytes, rnd: random.Random) -> None:
    whole_error = None
    try:
        whole = FrameDecoder(MAX_FRAME_BYTES).feed(data)
    except DecodeError as e:
        whole, whole_error = None, e
    dec = FrameDecoder(MAX_FRAME_BYTES)
    got: list[bytes] = []
    pos, chunk_error = 0, None
    try:
        while pos < len(data):
            step = rnd.choice((1, 2, 3, 7, 64, 4096))
            got += dec.feed(data[pos:pos + step])
            pos += step
    except DecodeError as e:
        chunk_error = e
    if (whole_error is None) != (chunk_error is None):
        raise Mismatch(f"frames fed whole and in chunks disagree: {whole_error!r} vs {chunk_error!r}")
    if whole_error is None and got != whole:
        raise Mismatch("frames fed whole and in chunks split differently")
    ClientProtocol(max_frame_bytes=MAX_FRAME_BYTES).receive_data(data)


def _batch(data: bytes) -> None:
    # header-only views first; then the full decoder, with and without the CRC
    valid_end, count = scan_valid_prefix(data)
    try:
        check_batch(data)
    except DecodeError:
        pass
    try:
        list(iter_batches(data, verify_crc=False))
    except DecodeError:
        pass
    try:
        batches = decode_batches(data, verify_crc=True, max_uncompressed_bytes=MAX_UNCOMPRESSED_BYTES)
    except DecodeError:
        batches = None
    if batches is not None and (valid_end, count) != (len(data), len(batches)):
        raise Mismatch(f"decode_batches accepts {len(batches)} batches but scan_valid_prefix "
                       f"finds ({valid_end}, {count}) of {len(data)} bytes")
    decode_batches(data, verify_crc=False, max_uncompressed_bytes=MAX_UNCOMPRESSED_BYTES)


def _records(data: bytes) -> None:
    count = struct.unpack_from(">i", data)[0] if len(data) >= 4 else 0
    decode_records(data, min(4, len(data)), len(data), count, 0, 1_700_000_000_000)


def run_seed(seed: Seed, data: bytes, rnd: random.Random, *, roundtrip: bool = True) -> None:
    """Decode ``data`` as ``seed.target``. Returns, or raises ``DecodeError`` (expected) or
    anything else (a crash) or ``Mismatch`` (a differential check failed)."""
    target = seed.target
    registry = REGISTRIES.get(target)
    if registry is not None:
        try:
            _decode_request(registry, data, roundtrip)
        except DecodeError:
            if target == "spu":
                _produce_generic_only(data)
            raise
    elif target == "response":
        decode_response(data, seed.cls, seed.version)
    elif target == "batch":
        _batch(data)
    elif target == "records":
        _records(data)
    elif target == "compressed":
        decompress(seed.version, data, MAX_UNCOMPRESSED_BYTES)
    elif target == "frames":
        _frames(data, rnd)
    else:
        raise ValueError(f"unknown target {target!r}")


def replay(target: str, payload_hex: str, cls: type | None = None, version: int = 0) -> None:
    """Run one finding again: raises what it raised."""
    run_seed(Seed(target, b"", cls=cls, version=version), bytes.fromhex(payload_hex), random.Random(0))


# =============================================================================================
# In-process fuzzing


@dataclass
class Finding:
    target: str
    error: str
    where: str
    payload_hex: str
    detail: str = ""

    def key(self) -> tuple[str, str, str]:
        return (self.target, self.error.split(":")[0], self.where)


@dataclass
class InProcessReport:
    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)  # (target, "ok"|"decode-error") -> n
    findings: list[Finding] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest: str = ""
    slowest_hex: str = ""
    peak_rss_kib: int = 0

    def merge(self, other: InProcessReport) -> None:
        self.cases += other.cases
        self.seconds = max(self.seconds, other.seconds)
        self.outcomes.update(other.outcomes)
        self.findings += other.findings
        if other.slowest_ms > self.slowest_ms:
            self.slowest_ms, self.slowest, self.slowest_hex = (other.slowest_ms, other.slowest,
                                                               other.slowest_hex)
        self.peak_rss_kib = max(self.peak_rss_kib, other.peak_rss_kib)

    def unique_findings(self) -> dict[tuple[str, str, str], tuple[Finding, int]]:
        out: dict[tuple[str, str, str], tuple[Finding, int]] = {}
        for f in self.findings:
            k = f.key()
            first, n = out.get(k, (f, 0))
            out[k] = (first if len(first.payload_hex) <= len(f.payload_hex) else f, n + 1)
        return out


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(tb):
        if "/fluvial/" in frame.filename.replace("\\", "/"):
            return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
    return f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"


def fuzz_in_process(cases: int, seed: int = 0, *, corpus: list[Seed] | None = None,
                    roundtrip: bool = True, max_findings: int = 200) -> InProcessReport:
    """Throw ``cases`` mutated inputs at the decoders; see the module docstring."""
    rnd = random.Random(seed)
    corpus = corpus if corpus is not None else build_corpus(random.Random(seed), per_class=6)
    by_target: dict[str, list[Seed]] = {}
    for s in corpus:
        by_target.setdefault(s.target, []).append(s)
    targets = sorted(by_target)
    report = InProcessReport()
    started = time.perf_counter()
    perf = time.perf_counter
    for i in range(cases):
        target = targets[i % len(targets)]
        pool = by_target[target]
        s = rnd.choice(pool)
        roll = rnd.random()
        if roll < 0.02:
            data = rnd.randbytes(rnd.randint(0, 64))  # pure garbage
        else:
            data = mutate(s.data, rnd, keep=s.keep, splice=lambda: rnd.choice(pool).data)
            if target == "batch":
                roll = rnd.random()
                if roll < 0.3:
                    data = fix_crcs(data)
                elif roll < 0.6:
                    section = rnd.choice(by_target["records"]).data
                    data = rebatch(mutate(section, rnd), rnd)
        t0 = perf()
        try:
            run_seed(s, data, rnd, roundtrip=roundtrip)
            report.outcomes[(target, "ok")] += 1
        except DecodeError:
            report.outcomes[(target, "decode-error")] += 1
        except Exception as e:  # noqa: BLE001 - that is what we hunt
            report.outcomes[(target, "crash")] += 1
            if len(report.findings) < max_findings:
                report.findings.append(Finding(
                    target, f"{type(e).__name__}: {e}"[:300], _where(e), data.hex(),
                    f"{s.cls.__name__} v{s.version}" if s.cls else ""))
        dt = (perf() - t0) * 1000
        if dt > report.slowest_ms:
            report.slowest_ms, report.slowest = dt, f"{target} {len(data)} bytes"
            report.slowest_hex = data.hex()
        report.cases += 1
    report.seconds = time.perf_counter() - started
    report.peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return report


def _worker(args: tuple[int, int, bool]) -> InProcessReport:
    cases, seed, roundtrip = args
    return fuzz_in_process(cases, seed, roundtrip=roundtrip)


def run_in_process_part(cases: int, seed: int, jobs: int) -> InProcessReport:
    if jobs <= 1:
        return fuzz_in_process(cases, seed)
    share = math.ceil(cases / jobs)
    report = InProcessReport()
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for part in pool.imap_unordered(_worker, [(share, seed + j, True) for j in range(jobs)]):
            report.merge(part)
    return report


def print_in_process(report: InProcessReport) -> None:
    print(f"\n== in-process: {report.cases:,} cases in {report.seconds:.1f}s "
          f"({report.cases / max(report.seconds, 1e-9):,.0f}/s in all); "
          f"peak RSS of a fuzzing process {report.peak_rss_kib / 1024:.0f} MiB")
    targets = sorted({t for t, _ in report.outcomes})
    for t in targets:
        o = {k: report.outcomes[(t, k)] for k in ("ok", "decode-error", "crash")}
        print(f"  {t:<12} ok {o['ok']:>8,}  DecodeError {o['decode-error']:>8,}  crash {o['crash']:>5,}")
    print(f"  slowest single case: {report.slowest_ms:.1f} ms ({report.slowest}: "
          f"{report.slowest_hex[:120]}{'...' if len(report.slowest_hex) > 120 else ''})")
    unique = report.unique_findings()
    print(f"  crashes: {sum(report.outcomes[(t, 'crash')] for t in targets)} "
          f"({len(unique)} distinct)")
    for (target, _err, where), (f, n) in sorted(unique.items()):
        print(f"  - [{target}] {f.error} at {where} (x{n}) {f.detail}")
        print(f"    payload: {f.payload_hex[:2000]}")


# =============================================================================================
# Amplification: well-formed frames that cost far more to decode than they weigh


def amplifying_frames(body_bytes: int) -> dict[str, tuple[str, bytes]]:
    """Valid request payloads of about ``body_bytes`` that decode into one Python object per few
    wire bytes: name -> (target, payload without the size prefix)."""
    def header(cls: type, version: int) -> bytes:
        return RequestHeader(cls.API_KEY, version, 1, "amp").encode()

    n = body_bytes // 2
    inner = struct.pack(">i", n) + b"\x00\x00" * n + b"\x00\x00"  # n empty ListFilters, summary, system
    sc_list = (header(sa.ObjectApiListRequest, sa.COMMON_VERSION) + struct.pack(">H", 5) + b"Topic"
               + struct.pack(">I", len(inner)) + inner)
    n = body_bytes // 6
    offsets = (header(spa.FetchOffsetsRequest, 0) + struct.pack(">i", n)
               + b"\x00\x00\x00\x00\x00\x00" * n)  # n topics "" with no partitions
    produce = (header(spa.ProduceRequest, spa.COMMON_VERSION) + b"\x00" + struct.pack(">hi", 1, 1500)
               + struct.pack(">i", n) + b"\x00\x00\x00\x00\x00\x00" * n + struct.pack(">i", 0))
    report = ia.ReplicaReport(topic="t", partition=0, leader_epoch=0, is_leader=True, leo=0, hw=0,
                              log_start_offset=0, size=0, isr=[1] * (body_bytes // 4),
                              follower_leos=[], error=None, isr_version=0)
    replicas = header(ia.ReportReplicasRequest, 0) + struct.pack(">ii", 5001, 1) + report.encode()
    return {"SC List, empty name filters": ("sc", sc_list),
            "SPU FetchOffsets, empty topics": ("spu", offsets),
            "SPU Produce, empty topics": ("spu", produce),
            "SC private ReportReplicas, long ISR": ("sc-private", replicas)}


@dataclass
class Amplification:
    """What decoding one amplifying frame cost, or the cap that refused it (``refused``)."""

    name: str
    size: int
    seconds_per_mib: float
    bytes_per_byte: float
    refused: str | None = None


def amplification_probe(body_bytes: int = 256 * 1024) -> list[Amplification]:
    """Decode every ``amplifying_frames`` payload: its time and peak allocation per wire byte.

    A frame a request cap refuses (a ``DecodeError``) is reported as refused, with the decoder's
    message and the time and memory spent until the refusal: that is the cap doing its job.
    """
    import gc
    import tracemalloc

    out = []
    for name, (target, payload) in amplifying_frames(body_bytes).items():
        t0 = time.perf_counter()
        refused = _refusal(target, payload)
        seconds = time.perf_counter() - t0
        gc.collect()
        tracemalloc.start()
        _refusal(target, payload)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.append(Amplification(name, len(payload), seconds * (1 << 20) / len(payload),
                                 peak / len(payload), refused))
    return out


def _refusal(target: str, payload: bytes) -> str | None:
    """Decode ``payload`` and drop the result: None, or the ``DecodeError`` that refused it."""
    try:
        _decode_only(target, payload)
    except DecodeError as e:
        return str(e)
    return None


def _decode_only(target: str, payload: bytes) -> Any:
    registry = REGISTRIES[target]
    return sa.decode_sc_request(payload) if registry is sa.SC_REQUESTS else decode_request(payload, registry)


def print_amplification(rows: list[Amplification]) -> None:
    print("\n== decode amplification (valid frames, one object per few wire bytes):")
    for r in rows:
        cost = (f"{r.seconds_per_mib:6.2f} s of decoding per MiB, "
                f"{r.bytes_per_byte:5.1f} bytes allocated per byte")
        outcome = f"refused by a cap: {r.refused}" if r.refused else cost
        print(f"  {r.name:<38} {r.size / 1024:>6.0f} KiB: {outcome}")


# =============================================================================================
# Live fuzzing against a running cluster


def _cli(home: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLUVIAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "fluvial.cli.main", *args], env=env, check=check,
                          capture_output=True, text=True, timeout=timeout)


def _proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass
class LiveReport:
    frames_sent: dict[str, int] = field(default_factory=Counter)
    connections: int = 0
    connect_failures: int = 0
    died: list[str] = field(default_factory=list)
    unresponsive: list[str] = field(default_factory=list)
    rss_kib: dict[str, int] = field(default_factory=dict)
    baseline_ms: list[float] = field(default_factory=list)
    attack_ms: list[float] = field(default_factory=list)
    consume_baseline_ms: list[float] = field(default_factory=list)
    consume_attack_ms: list[float] = field(default_factory=list)
    client_errors: list[str] = field(default_factory=list)
    produced: int = 0
    consumed: int = 0
    log_errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    attack_seconds: float = 0.0
    inventory: dict[str, int] = field(default_factory=dict)
    big_frame: tuple[int, float] | None = None  # (payload bytes, seconds until answered)
    spus: dict[int, str] = field(default_factory=dict)


class _LiveRun:
    """The live part; see ``run_live``."""

    def __init__(self, home: Path, members: list[dict], frames: int, seed: int, tls: dict | None):
        self.home, self.members, self.frames, self.tls = home, members, frames, tls
        self.rnd = random.Random(seed)
        self.report = LiveReport()
        corpus = build_corpus(random.Random(seed), per_class=4)
        self.seeds = {t: [s for s in corpus if s.target == t] for t in REGISTRIES}
        self.attack = None  # trio.Event set while the fuzzers run
        self.stop = None

    # -------------------------------------------------------------------------------- ports

    def ports(self) -> dict[str, tuple[int, str]]:
        sc = next(m for m in self.members if m["kind"] == "sc")
        spu = next(m for m in self.members if m["kind"] == "spu")
        return {"sc": (sc["public_port"], "sc"), "sc-private": (sc["private_port"], "sc-private"),
                "spu": (spu["public_port"], "spu"), "spu-private": (spu["private_port"], "spu-private")}

    def _ssl(self, target: str, member: bool):
        if self.tls is None:
            return None, None
        from fluvial.net.tls import client_ssl_context

        d = Path(self.tls["dir"])
        if member:
            ctx = client_ssl_context(d / "ca.crt", cert_file=d / "sc.crt", key_file=d / "sc.key")
        else:
            ctx = client_ssl_context(d / "ca.crt", cert_file=d / "client-admin.crt",
                                     key_file=d / "client-admin.key")
        return ctx, self.tls["domain"]

    async def open_raw(self, port: int, target: str):
        import trio

        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        ctx, name = self._ssl(target, target.endswith("private"))
        if ctx is None or self.rnd.random() < 0.05:  # sometimes plaintext to a TLS port
            return tcp
        tls = trio.SSLStream(tcp, ctx, server_hostname=name)
        await tls.do_handshake()
        return tls

    # -------------------------------------------------------------------------------- client

    async def setup_topic(self) -> int:
        from fluvial.net.multiplexer import open_connection

        port = self.ports()["sc"][0]
        ctx, name = self._ssl("sc", False)
        async with open_connection("127.0.0.1", port, ssl_context=ctx, server_hostname=name) as sc:
            await sc.handshake(timeout=30)
            st = await sc.call(sa.ObjectApiCreateRequest.of("bench-fuzz-clean", so.TopicSpec.computed(1, 1)),
                               timeout=60)
            if not st.error_code.ok and st.error_code.code != ErrorCode.TopicAlreadyExists:
                raise RuntimeError(f"cannot create the client's topic: {st}")
        return self.ports()["spu"][0]

    async def client(self, spu_port: int) -> None:
        """Produce one record at a time (acks 1) and consume them on a stream; record latencies."""
        import trio

        from fluvial.net.multiplexer import open_connection
        from fluvial.protocol.batch import iter_batches
        from fluvial.protocol.record import decode_batch

        ctx, name = self._ssl("spu", False)
        topic = "bench-fuzz-clean"
        rep = self.report
        async with open_connection("127.0.0.1", spu_port, ssl_context=ctx, server_hostname=name) as spu:
            await spu.handshake(timeout=30)
            deadline = trio.current_time() + 30
            while True:  # the partition may need a moment to become leader
                resp = await spu.call(spa.ProduceRequest(None, spa.Isolation.ReadUncommitted, 5000, [
                    spa.TopicProduceData(topic, [spa.PartitionProduceData(
                        0, encode_batch([struct.pack(">d", time.time())]))])]), timeout=30)
                if resp.responses[0].partitions[0].error_code.ok:
                    break
                if trio.current_time() > deadline:
                    raise RuntimeError(f"the client's topic never became writable: {resp}")
                await trio.sleep(0.1)

            async def consume() -> None:
                req = spa.StreamFetchRequest(topic, 0, 0, max_bytes=1 << 20)
                async with spu.open_stream(req) as stream:
                    async for msg in stream:
                        now = time.time()
                        records = msg.partition.records
                        next_offset = None
                        for pos, h in iter_batches(records, verify_crc=False):
                            rep.consumed += h.record_count
                            next_offset = h.next_offset
                            for r in decode_batch(records, pos, verify_crc=False).records:
                                sent = struct.unpack(">d", r.value)[0]
                                (rep.consume_attack_ms if self.attack.is_set()
                                 else rep.consume_baseline_ms).append((now - sent) * 1000)
                        if next_offset is not None:  # acknowledge, so the SPU sends more
                            await spu.call(spa.UpdateOffsetsRequest(
                                [spa.OffsetUpdate(next_offset, msg.stream_id)]), timeout=10)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    batch = encode_batch([struct.pack(">d", time.time())])
                    try:
                        resp = await spu.call(spa.ProduceRequest(None, spa.Isolation.ReadUncommitted, 5000, [
                            spa.TopicProduceData(topic, [spa.PartitionProduceData(0, batch)])]), timeout=10)
                        err = resp.responses[0].partitions[0].error_code
                        if not err.ok:
                            rep.client_errors.append(f"produce: {err.message}")
                    except Exception as e:  # noqa: BLE001 - reported
                        rep.client_errors.append(f"produce: {type(e).__name__}: {e}")
                        break
                    ms = (time.perf_counter() - t0) * 1000
                    (rep.attack_ms if self.attack.is_set() else rep.baseline_ms).append(ms)
                    rep.produced += 1
                    await trio.sleep(0.005)
                # let the consumer catch up with the last records, then stop it
                with trio.move_on_after(5):
                    while rep.consumed < rep.produced:
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

    # -------------------------------------------------------------------------------- fuzzers

    def malformed_frames(self, target: str) -> list[bytes]:
        """1..12 frames for one connection: mutated valid requests for ``target``'s API, and now
        and then raw garbage, a negative or huge size prefix, or a frame cut short."""
        rnd = self.rnd
        pool = self.seeds[target]
        out = []
        for _ in range(rnd.randint(1, 12)):
            roll = rnd.random()
            if roll < 0.03:
                out.append(rnd.randbytes(rnd.randint(1, 64)))
            elif roll < 0.05:
                out.append(struct.pack(">i", rnd.choice((-1, -(2**31), 2**31 - 1, 1 << 27))))
            else:
                s = rnd.choice(pool)
                data = mutate(s.data, rnd, keep=s.keep, splice=lambda: rnd.choice(pool).data)
                prefix = len(data)
                if rnd.random() < 0.03:
                    prefix += rnd.choice((1, 100))  # the frame never completes
                out.append(struct.pack(">i", prefix) + data)
        return out

    async def fuzzer(self, target: str, port: int, quota: int) -> None:
        import trio

        rep = self.report
        while rep.frames_sent[target] < quota and not self.stop.is_set():
            frames = self.malformed_frames(target)
            try:
                stream = await self.open_raw(port, target)
            except (OSError, trio.BrokenResourceError) as e:
                rep.connect_failures += 1
                if rep.connect_failures < 5:
                    print(f"  connect to {target} failed: {e!r}")
                await trio.sleep(0.05)
                continue
            rep.connections += 1
            try:
                for f in frames:
                    await stream.send_all(f)
                    rep.frames_sent[target] += 1
                with trio.move_on_after(0.02):  # read a little of what comes back
                    while await stream.receive_some(65536):
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the server closed a connection that sent garbage: expected
            finally:
                await trio.aclose_forcefully(stream)

    async def big_frame(self, kib: int) -> None:
        """One valid, amplifying FetchOffsets frame of ``kib`` KiB at the SPU's public port; how
        long until it is answered is reported (meanwhile the client's latency shows the stall)."""
        import trio

        _target, payload = amplifying_frames(kib * 1024)["SPU FetchOffsets, empty topics"]
        stream = await self.open_raw(self.ports()["spu"][0], "spu")
        t0 = time.perf_counter()
        try:
            await stream.send_all(struct.pack(">i", len(payload)) + payload)
            with trio.move_on_after(300):
                got = 0
                while got < 4:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    got += len(data)
            self.report.big_frame = (len(payload), time.perf_counter() - t0)
        finally:
            await trio.aclose_forcefully(stream)

    async def health(self) -> None:
        """Every 0.5 s: are the processes alive, and does every port answer ApiVersions?"""
        import trio

        from fluvial.net.multiplexer import open_connection

        rep = self.report
        while not self.stop.is_set():
            for m in self.members:
                name = "sc" if m["kind"] == "sc" else f"spu-{m['id']}"
                if not pid_alive(m["pid"]) and name not in rep.died:
                    rep.died.append(name)
            for target, (port, _) in self.ports().items():
                ctx, hostname = self._ssl(target, target.endswith("private"))
                try:
                    with trio.fail_after(5):
                        async with open_connection("127.0.0.1", port, ssl_context=ctx,
                                                   server_hostname=hostname) as c:
                            await c.handshake()
                except Exception as e:  # noqa: BLE001 - reported
                    msg = f"{target}: {type(e).__name__}: {e}"
                    if msg not in rep.unresponsive:
                        rep.unresponsive.append(msg)
            with trio.move_on_after(0.5):
                await self.stop.wait()

    async def inventory(self) -> None:
        """What the attack left in the SC's store: objects per kind, and the SPUs' states."""
        from fluvial.net.multiplexer import open_connection

        ctx, name = self._ssl("sc", False)
        async with open_connection("127.0.0.1", self.ports()["sc"][0], ssl_context=ctx,
                                   server_hostname=name) as sc:
            await sc.handshake(timeout=10)
            for spec in (so.TopicSpec, so.PartitionSpec, so.SpuSpec, so.CustomSpuSpec,
                         so.SmartModuleSpec, so.TableFormatSpec, so.SpuGroupSpec):
                resp = await sc.call(sa.ObjectApiListRequest.of(spec), timeout=30)
                self.report.inventory[spec.LABEL] = len(resp.items)
                if spec is so.SpuSpec:
                    self.report.spus = {m.spec.id: m.status.resolution.name for m in resp.items}

    async def main(self, baseline_seconds: float, concurrency: int, big_frame_kib: int = 0) -> None:
        import trio

        self.attack, self.stop = trio.Event(), trio.Event()
        spu_port = await self.setup_topic()
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.client, spu_port)
            nursery.start_soon(self.health)
            await trio.sleep(baseline_seconds)
            self.attack.set()
            attack_started = time.perf_counter()
            ports = self.ports()
            share = math.ceil(self.frames / len(ports))
            async with trio.open_nursery() as fuzzers:
                if big_frame_kib:
                    fuzzers.start_soon(self.big_frame, big_frame_kib)
                for target, (port, _) in ports.items():
                    for _ in range(concurrency):
                        fuzzers.start_soon(self.fuzzer, target, port, share)
            self.report.attack_seconds = time.perf_counter() - attack_started
            self.stop.set()
        self.report.seconds = time.perf_counter() - started
        try:
            await self.inventory()
        except Exception as e:  # noqa: BLE001 - reported
            self.report.unresponsive.append(f"sc inventory after the attack: {type(e).__name__}: {e}")


def run_live(frames: int, seed: int, *, tls: bool, concurrency: int = 4,
             baseline_seconds: float = 3.0, keep_home: bool = False,
             big_frame_kib: int = 0) -> LiveReport:
    """Start a 1-SPU cluster in a temp FLUVIAL_HOME, attack it, shut it down; see the docstring."""
    import trio

    home = Path(tempfile.mkdtemp(prefix="fluvial-fuzz-"))
    args = ["cluster", "start", "--sc-port", "0", "--spus", "1"]
    help_text = _cli(home, "cluster", "start", "--help").stdout
    if "--no-tls" in help_text:
        args.append("--tls" if tls else "--no-tls")
    elif tls:
        raise SystemExit("this `fluvial cluster start` has no --tls option")
    try:
        out = _cli(home, *args)
        print(f"  {out.stdout.strip()}")
        state = json.loads((home / "cluster.json").read_text())
        members = state["members"]
        tls_info = state.get("tls")
        if tls and not tls_info:
            raise SystemExit("cluster.json says the cluster runs without TLS")
        run = _LiveRun(home, members, frames, seed, tls_info)
        trio.run(run.main, baseline_seconds, concurrency, big_frame_kib)
        rep = run.report
        for m in members:
            name = "sc" if m["kind"] == "sc" else f"spu-{m['id']}"
            hwm = _proc_status_kib(m["pid"], "VmHWM")
            if hwm is not None:
                rep.rss_kib[name] = hwm
            if not pid_alive(m["pid"]) and name not in rep.died:
                rep.died.append(name)
        for log in sorted((home / "logs").glob("*.log")):
            rep.log_errors.update(log_errors(log.stem, log.read_text(errors="replace")))
        return rep
    finally:
        _cli(home, "cluster", "shutdown", check=False)
        if keep_home:
            print(f"  cluster home kept at {home}")
        else:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) ", re.M)
_ADDRESS = re.compile(r"\(?'?127\.0\.0\.1'?(?:, |:)\d+\)?|\[Errno \d+\]")


def log_errors(member: str, text: str) -> Counter:
    """ERROR records of one server log, keyed by message (addresses removed) and the last line
    of their traceback: what a handler raised."""
    out: Counter = Counter()
    starts = [m for m in _RECORD_START.finditer(text)]
    for m, nxt in zip(starts, starts[1:] + [None]):
        if m.group(1) not in ("ERROR", "CRITICAL"):
            continue
        record = text[m.end():nxt.start() if nxt else len(text)].rstrip().splitlines()
        message = _ADDRESS.sub("*", record[0])
        last = record[-1].strip() if len(record) > 1 else ""
        out[f"{member}: {message} | {_ADDRESS.sub('*', last)[:200]}"] += 1
    return out


def print_live(rep: LiveReport) -> None:
    total = sum(rep.frames_sent.values())
    print(f"\n== live: {total:,} malformed frames over {rep.connections:,} connections in "
          f"{rep.attack_seconds:.1f}s ({', '.join(f'{k} {v:,}' for k, v in sorted(rep.frames_sent.items()))})")
    print(f"  processes died: {rep.died or 'none'}; ports that stopped answering: "
          f"{rep.unresponsive or 'none'}; failed connects: {rep.connect_failures}")
    print(f"  peak RSS (VmHWM): {', '.join(f'{k} {v / 1024:.1f} MiB' for k, v in rep.rss_kib.items())}")
    for label, base, attack in (("produce RTT", rep.baseline_ms, rep.attack_ms),
                                ("end-to-end ", rep.consume_baseline_ms, rep.consume_attack_ms)):
        print(f"  client {label}: baseline p50 {_percentile(base, .5):.2f} ms p99 "
              f"{_percentile(base, .99):.2f} ms (n={len(base)}); under attack p50 "
              f"{_percentile(attack, .5):.2f} ms p99 {_percentile(attack, .99):.2f} ms (n={len(attack)})")
    print(f"  client: {rep.produced} produced, {rep.consumed} consumed, "
          f"{len(rep.client_errors)} errors {rep.client_errors[:5]}")
    if rep.big_frame:
        size, seconds = rep.big_frame
        print(f"  one valid {size / 1024:.0f} KiB FetchOffsets frame (empty topics) was answered "
              f"after {seconds:.2f}s")
    print(f"  left in the SC after the attack: {rep.inventory}; SPUs {rep.spus}")
    print(f"  server log errors: {sum(rep.log_errors.values())} ({len(rep.log_errors)} distinct)")
    for line, n in rep.log_errors.most_common(25):
        print(f"    x{n} {line}")


# =============================================================================================


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1_000_000, help="in-process cases (default 1e6)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="in-process worker processes")
    p.add_argument("--live-frames", type=int, default=10_000, help="malformed frames at live ports")
    p.add_argument("--concurrency", type=int, default=4, help="fuzzer connections per port at a time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tls", action="store_true", help="attack a TLS cluster (needs cluster start TLS)")
    p.add_argument("--skip-inproc", action="store_true")
    p.add_argument("--skip-live", action="store_true")
    p.add_argument("--keep-home", action="store_true", help="keep the live cluster's FLUVIAL_HOME")
    p.add_argument("--big-frame-kib", type=int, default=0,
                   help="also send one amplifying FetchOffsets frame of this size to the SPU")
    args = p.parse_args(argv)
    crashes = 0
    if not args.skip_inproc:
        report = run_in_process_part(args.cases, args.seed, args.jobs)
        print_in_process(report)
        print_amplification(amplification_probe())
        crashes += sum(n for (_t, k), n in report.outcomes.items() if k == "crash")
    if not args.skip_live:
        print("\n== live: starting a cluster")
        rep = run_live(args.live_frames, args.seed, tls=args.tls, concurrency=args.concurrency,
                       keep_home=args.keep_home, big_frame_kib=args.big_frame_kib)
        print_live(rep)
        crashes += len(rep.died) + len(rep.unresponsive)
    print(f"\ncrashes: {crashes}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
