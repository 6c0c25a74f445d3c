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

Part 2, live (``--live-frames``, default 10,000; the code is in bench/fuzz_live.py): ``fluvial cluster start`` in a temporary
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
import math
import multiprocessing
import os
import random
import resource
import struct
import sys
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
        sys.modules.setdefault("fuzz", sys.modules[__name__])  # bench/fuzz_live.py imports us
        from fuzz_live import print_live, run_live

        print("\n== live: starting a cluster")
        rep = run_live(args.live_frames, args.seed, tls=args.tls, concurrency=args.concurrency,
                       keep_home=args.keep_home, big_frame_kib=args.big_frame_kib)
        print_live(rep)
        crashes += len(rep.died) + len(rep.unresponsive)
    print(f"\ncrashes: {crashes}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
