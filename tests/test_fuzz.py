"""Fuzzing every decoder a peer can reach: malformed input raises ``DecodeError`` and nothing else.

Seeds are valid inputs generated from the wire types (``bench/fuzz.py``'s ``build_corpus``: every
request of the SC, SPU and private APIs at random versions, every response, record batches, records
sections, compressed sections, streams of frames). Hypothesis draws a seed and a list of edits
(bit flips, bytes, big-endian "interesting" integers over length and count fields, insertions,
deletions, truncation), so a failure shrinks to a few edits of one seed. Besides "only
DecodeError", ``run_seed`` checks that the fast and the generic Produce decoders agree, that frames
split the same fed whole or in chunks, that a decodable record set is what ``scan_valid_prefix``
accepts, and that a decoded request re-encodes to itself.

About 5,000 hypothesis cases and 20,000 seeded random mutations in all, in well under a minute.
``python bench/fuzz.py`` runs the same checks a million times and against live servers.
"""

from __future__ import annotations

import importlib.util
import random
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluvial.protocol.api import RequestHeader, encode_request
from fluvial.protocol.batch import check_batch
from fluvial.protocol.codec import DecodeError

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"


def _load_fuzz_module():
    spec = importlib.util.spec_from_file_location("fluvial_bench_fuzz", _BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz_module()
CORPUS = fuzz.build_corpus(random.Random(20240), per_class=5)
BY_TARGET: dict[str, list] = {}
for _seed in CORPUS:
    BY_TARGET.setdefault(_seed.target, []).append(_seed)

# per target: hypothesis examples (the request decoders and batches get the most)
EXAMPLES = {"sc": 700, "spu": 700, "sc-private": 500, "spu-private": 500, "response": 600,
            "batch": 600, "records": 400, "compressed": 300, "frames": 400}

_FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                             HealthCheck.data_too_large])

# ------------------------------------------------------------------------------------ edits

_position = st.integers(0, 2**16)  # taken modulo the length, so shrinking heads for the start
_edit = st.one_of(
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("byte"), _position, st.integers(0, 255)),
    st.tuples(st.just("int"), _position, st.sampled_from([2, 4, 8]),
              st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
                               0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**63, 2**64 - 1])),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _position, st.integers(1, 16)),
    st.tuples(st.just("truncate"), _position),
)
_edits = st.lists(_edit, min_size=1, max_size=6)


def apply_edits(data: bytes, edits, keep: int = 0) -> bytes:
    """Apply hypothesis-drawn edits; positions fall in ``[keep, len)`` when there is room."""
    b = bytearray(data)
    for edit in edits:
        kind, at = edit[0], edit[1]
        lo = keep if len(b) > keep else 0
        span = len(b) - lo
        if kind == "insert":
            i = lo + at % (span + 1)
            b[i:i] = edit[2]
            continue
        if span <= 0:
            continue
        i = lo + at % span
        if kind == "flip":
            b[i] ^= 1 << edit[2]
        elif kind == "byte":
            b[i] = edit[2]
        elif kind == "int":
            width, value = edit[2], edit[3] % (1 << (8 * edit[2]))
            if len(b) - i >= width:
                b[i:i + width] = value.to_bytes(width, "big")
        elif kind == "delete":
            del b[i:i + edit[2]]
        elif kind == "truncate":
            del b[i:]
    return bytes(b)


def check(seed, data: bytes) -> None:
    """Decode ``data`` as the seed's target; only ``DecodeError`` may come out."""
    try:
        fuzz.run_seed(seed, data, random.Random(len(data)))
    except DecodeError:
        pass


# ------------------------------------------------------------------------------------ corpus


def test_corpus_covers_every_target_and_request_class():
    assert set(BY_TARGET) == set(fuzz.TARGETS)
    for target, registry in fuzz.REGISTRIES.items():
        keys = {RequestHeader.read(fuzz.Reader(s.data)).api_key for s in BY_TARGET[target]}
        assert keys == set(registry), target


@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_every_seed_decodes_cleanly(target):
    """Unmutated seeds are valid, so the fuzz starts from inputs that reach deep into decoders."""
    for seed in BY_TARGET[target]:
        fuzz.run_seed(seed, seed.data, random.Random(0))


def test_fix_crcs_and_rebatch_make_crc_valid_batches():
    rnd = random.Random(1)
    batch = fuzz.random_batch(rnd)
    broken = bytearray(batch)
    broken[-1] ^= 0xFF
    with pytest.raises(DecodeError, match="CRC"):
        check_batch(bytes(broken))
    check_batch(fuzz.fix_crcs(bytes(broken)))
    section = fuzz.encode_records([b"a", b"b"])[0]
    assert len(fuzz.decode_batches(fuzz.rebatch(section, rnd))[0].records) == 2


def test_a_crash_is_reported_with_its_payload(monkeypatch):
    """The harness itself: an exception other than DecodeError is a finding, with the bytes."""
    def boom(payload, registry=None):
        raise IndexError("index out of range")

    monkeypatch.setattr(fuzz, "decode_request", boom)
    report = fuzz.fuzz_in_process(40, 0, corpus=BY_TARGET["spu"])
    assert report.outcomes[("spu", "crash")] == 40
    finding = report.findings[0]
    assert finding.error.startswith("IndexError") and finding.payload_hex
    with pytest.raises(IndexError):
        fuzz.replay("spu", finding.payload_hex)


def test_a_differential_mismatch_is_a_finding(monkeypatch):
    monkeypatch.setattr(fuzz.spa.ProduceRequest, "generic_wire_decode",
                        classmethod(lambda cls, r, version: None))
    produce = [s for s in BY_TARGET["spu"] if s.data[:2] == b"\x00\x00"]
    with pytest.raises(fuzz.Mismatch):
        fuzz.run_seed(produce[0], produce[0].data, random.Random(0))


# ------------------------------------------------------------------------------------ fuzz


@pytest.mark.parametrize("target", sorted(EXAMPLES))
def test_mutated_input_raises_only_decode_error(target):
    seeds = BY_TARGET[target]

    @settings(max_examples=EXAMPLES[target], **_FUZZ_SETTINGS)
    @given(seed=st.sampled_from(seeds), edits=_edits, spare_header=st.booleans())
    def run(seed, edits, spare_header):
        check(seed, apply_edits(seed.data, edits, seed.keep if spare_header else 0))

    run()


@pytest.mark.parametrize("target", sorted(fuzz.REGISTRIES))
@settings(max_examples=150, **_FUZZ_SETTINGS)
@given(data=st.data())
def test_any_body_after_a_valid_header_raises_only_decode_error(target, data):
    """Every api key and version a server accepts, followed by arbitrary bytes."""
    registry = fuzz.REGISTRIES[target]
    cls = data.draw(st.sampled_from(list(registry.values())))
    version = data.draw(st.integers(cls.MIN_API_VERSION, cls.MAX_API_VERSION))
    header = RequestHeader(cls.API_KEY, version, 1, data.draw(st.text(max_size=4))).encode()
    body = data.draw(st.binary(max_size=96))
    check(fuzz.Seed(target, b""), header + body)


@settings(max_examples=300, **_FUZZ_SETTINGS)
@given(frames=st.lists(st.binary(max_size=40), max_size=5), tail=st.binary(max_size=12),
       sizes=st.lists(st.integers(-2**31, 2**31 - 1), max_size=2))
def test_frame_streams_with_forged_sizes(frames, tail, sizes):
    stream = b"".join(struct.pack(">i", len(f)) + f for f in frames)
    stream += b"".join(struct.pack(">i", s) for s in sizes) + tail
    check(fuzz.Seed("frames", b""), stream)


@settings(max_examples=200, **_FUZZ_SETTINGS)
@given(section=st.binary(max_size=80), data=st.data())
def test_arbitrary_records_sections_inside_valid_batches(section, data):
    """Valid header, compression and CRC around arbitrary bytes: the records decoder's input."""
    rnd = random.Random(data.draw(st.integers(0, 2**32)))
    check(fuzz.Seed("batch", b""), fuzz.rebatch(section, rnd))


def test_seeded_random_mutations_find_no_crash():
    """20,000 cases of bench/fuzz.py's own mutator (faster, and different edits)."""
    report = fuzz.fuzz_in_process(20_000, seed=7, corpus=CORPUS)
    crashes = report.unique_findings()
    assert not crashes, "\n".join(f"[{t}] {f.error} at {w}: {f.payload_hex}"
                                  for (t, _e, w), (f, _n) in crashes.items())
    assert report.cases == 20_000
    # the mutator leaves enough valid inputs for the decoders to get past their first checks
    assert sum(n for (_t, k), n in report.outcomes.items() if k == "ok") > 2_000


def test_decoded_requests_reencode_for_each_registry():
    """The round trip run_seed checks, applied to freshly generated requests of every class."""
    gen = fuzz.Gen(random.Random(3))
    for target, registry in fuzz.REGISTRIES.items():
        for cls in registry.values():
            for _ in range(5):
                try:
                    frame = encode_request(gen.request(cls), 9, gen.version(cls), "c")
                except fuzz.EncodeError:
                    continue
                fuzz.run_seed(fuzz.Seed(target, b""), frame[4:], random.Random(0))
