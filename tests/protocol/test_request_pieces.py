"""A request frame in pieces (``encode_request_pieces``, what the client writes with one writev):
the same bytes as the joined frame, whatever the record sets' batches are; the large batches
are the producer's own objects, never copied; a mutable one is copied, so a later change to it
cannot reach the wire."""

from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.protocol.api import decode_request, encode_request, encode_request_pieces
from fluvial.protocol.codec import SPLICE_FROM_BYTES
from fluvial.protocol.spu_api import (
    Isolation, PartitionProduceData, ProduceRequest, SpuApiKey, TopicProduceData,
)

SIZES = st.sampled_from([0, 1, 100, SPLICE_FROM_BYTES - 1, SPLICE_FROM_BYTES, 70_000])
BATCHES = st.lists(st.builds(lambda n, b: bytes([b]) * n, SIZES, st.integers(0, 255)), max_size=4)


def produce(partitions: list[list[bytes]], joined: bool) -> ProduceRequest:
    parts = [PartitionProduceData(i, b"".join(batches) if joined else batches)
             for i, batches in enumerate(partitions)]
    return ProduceRequest(None, Isolation.ReadCommitted, 1500, [TopicProduceData("t", parts)], [])


@settings(max_examples=60, deadline=None)
@given(st.lists(BATCHES, min_size=1, max_size=3), st.integers(0, 2**31 - 1))
def test_pieces_are_the_frame_of_the_joined_batches(partitions, corr):
    pieces = encode_request_pieces(produce(partitions, joined=False), corr, client_id="me")
    frame = b"".join(pieces)
    assert frame == encode_request(produce(partitions, joined=True), corr, client_id="me")
    header, req = decode_request(frame[4:], {SpuApiKey.Produce: ProduceRequest})
    assert header.correlation_id == corr
    assert [p.records for p in req.topics[0].partitions] == [b"".join(b) for b in partitions]
    large = [b for batches in partitions for b in batches if len(b) >= SPLICE_FROM_BYTES]
    spliced = [p for p in pieces if any(p is b for b in large)]
    assert len(spliced) == len(large)  # each large batch is sent as it is, not copied


def test_a_mutable_batch_is_copied_when_spliced():
    batch = bytearray(b"x" * SPLICE_FROM_BYTES)
    pieces = encode_request_pieces(produce([[batch]], joined=False), 1)
    before = b"".join(pieces)
    batch[:4] = b"MUTE"
    assert b"".join(pieces) == before
    assert before == encode_request(produce([[b"x" * SPLICE_FROM_BYTES]], joined=False), 1)
