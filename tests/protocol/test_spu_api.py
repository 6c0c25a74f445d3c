"""SPU public API messages: golden frames (records.md §10.4-10.5, spu.md), three-way decoding,
hypothesis round trips for every message, and fuzzing through ``decode_request``."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluvial.errors import PAYLOAD, Error, ErrorCode
from fluvial.protocol import codec
from fluvial.protocol.api import (
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, UnsupportedRequest, decode_request,
    decode_response, encode_request, encode_response,
)
from fluvial.protocol.codec import (
    ERROR_CODE, DecodeError, EncodeError, Reader, SmartModuleInitRuntimeError,
    SmartModuleTransformRuntimeError,
)
from fluvial.protocol.spu_api import (
    ACKS, CLIENT_MAX_FETCH_BYTES, SPU_API_VERSIONS, SPU_REQUESTS, TIMEOUT_MS, AbortedTransaction,
    ConsumerOffset, DeleteConsumerOffsetRequest, DeleteConsumerOffsetResponse,
    DerivedStreamInvocation, FetchablePartitionResponse, FetchableTopic, FetchableTopicResponse,
    FetchConsumerOffsetsRequest, FetchConsumerOffsetsResponse, FetchOffsetPartition,
    FetchOffsetPartitionResponse, FetchOffsetsRequest, FetchOffsetsResponse, FetchOffsetTopic,
    FetchOffsetTopicResponse, FetchPartition, FetchRequest, FetchResponse, FilterOpts,
    ForgottenTopic, Isolation, Lookback, OffsetUpdate, OffsetUpdateStatus, PartitionProduceData,
    PartitionProduceResponse, ProduceRequest, ProduceResponse, ReplicaKey, SmartModuleContextData,
    SmartModuleExtraParams, SmartModuleInvocation, SmartModuleKind, SmartModuleInvocationWasm, SpuApiKey,
    StreamFetchRequest, StreamFetchResponse, TopicProduceData, TopicProduceResponse,
    UpdateConsumerOffsetRequest, UpdateConsumerOffsetResponse, UpdateOffsetsRequest,
    UpdateOffsetsResponse, decode_produce_request, encode_stream_fetch_response_prefix,
)


def h(text: str) -> bytes:
    """Hex with spaces, '|' separators and '#' comments allowed (one field per line)."""
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    return bytes.fromhex("".join(lines).replace("|", "").replace(" ", ""))


# records.md §10.1: Batch A, one record (key None, value "hello"), as stored at base offset 0.
BATCH_A = h("""
    00 00 00 00 00 00 00 00   # base_offset 0
    00 00 00 3d               # batch_length 61
    ff ff ff ff               # partition_leader_epoch -1
    02                        # magic 2
    af 7d d9 6c               # crc32c
    00 00                     # attributes
    00 00 00 00               # last_offset_delta 0
    00 00 01 8b cf e5 68 00   # first_timestamp 1700000000000
    00 00 01 8b cf e5 68 00   # max_time_stamp
    ff ff ff ff ff ff ff ff   # producer_id -1
    ff ff                     # producer_epoch -1
    ff ff ff ff               # first_sequence -1
    00 00 00 01               # record count 1
    16 00 00 00 00 0a 68 65 6c 6c 6f 00   # the record
""")
assert len(BATCH_A) == 73

# ------------------------------------------------------------------ golden frames (records.md)

PRODUCE_REQUEST_FRAME = h("""
    00 00 00 77               # frame size 119
    00 00  00 18  00 00 00 01 # api_key 0, api_version 24, correlation_id 1
    00 06 66 6c 75 76 69 6f   # client_id "fluvio"
    00                        # transactional_id None
    00 01                     # acks 1 (ReadUncommitted)
    00 00 05 dc               # timeout 1500 ms
    00 00 00 01               # 1 topic
    00 01 74                  #   name "t"
    00 00 00 01               #   1 partition entry
    00 00 00 00               #     partition_index 0
    00 00 00 49               #     RecordSet byte length 73
""") + BATCH_A + h("00 00 00 00   # smartmodules: empty [v8+]")
PRODUCE_REQUEST = ProduceRequest(
    transactional_id=None, isolation=Isolation.ReadUncommitted, timeout_ms=1500,
    topics=[TopicProduceData("t", [PartitionProduceData(0, BATCH_A)])], smartmodules=[])

PRODUCE_RESPONSE_FRAME = h("""
    00 00 00 31               # frame size 49
    00 00 00 01               # correlation_id 1
    00 00 00 01               # 1 topic
    00 01 74                  #   name "t"
    00 00 00 01               #   1 partition
    00 00 00 00               #     partition_index 0
    00 00                     #     error_code None
    00 00 00 00 00 00 00 00   #     base_offset 0
    00 00 00 00 00 00 00 00   #     log_append_time_ms 0 [v2+]
    00 00 00 00 00 00 00 00   #     log_start_offset 0 [v5+]
    00 00 00 00               # throttle_time_ms 0 [v1+]
""")
PRODUCE_RESPONSE = ProduceResponse([TopicProduceResponse("t", [PartitionProduceResponse(0, Error(), 0)])])

STREAM_FETCH_REQUEST_FRAME = h("""
    00 00 00 29
    03 eb  00 18  00 00 00 02  00 06 66 6c 75 76 69 6f   # key 1003, v24, corr 2, "fluvio"
    00 01 74                  # topic "t"
    00 00 00 00               # partition 0
    00 00 00 00 00 00 00 00   # fetch_offset 0
    00 10 01 3a               # max_bytes 1048890
    00                        # isolation ReadUncommitted
    00 00 00 00               # smartmodules: empty [v18+]
    00                        # consumer_id None [v23+]
""")
STREAM_FETCH_REQUEST = StreamFetchRequest(topic="t", partition=0, fetch_offset=0)

STREAM_FETCH_RESPONSE_FRAME = h("""
    00 00 00 77               # frame size
    00 00 00 02               # correlation_id 2
    00 01 74                  # topic "t"
    00 00 00 01               # stream_id 1
    00 00 00 00               # partition_index 0
    00 00                     # error_code None
    00 00 00 00 00 00 00 01   # high_watermark 1
    00 00 00 00 00 00 00 00   # next_filter_offset 0 [v11+]
    00 00 00 00 00 00 00 00   # log_start_offset 0
    00                        # aborted None
    00 00 00 49               # RecordSet byte length 73
""") + BATCH_A
STREAM_FETCH_RESPONSE = StreamFetchResponse(
    "t", 1, FetchablePartitionResponse(0, Error(), high_watermark=1, records=BATCH_A))

UPDATE_OFFSETS_REQUEST_FRAME = h("""
    00 00 00 20 | 03 ed 00 00 00 00 00 04 00 06 66 6c 75 76 69 6f   # key 1005, v0, corr 4
    00 00 00 01 | 00 00 00 00 00 00 00 01 | 00 00 00 01             # [offset 1, session_id 1]
""")
UPDATE_OFFSETS_REQUEST = UpdateOffsetsRequest([OffsetUpdate(1, 1)])
UPDATE_OFFSETS_RESPONSE_FRAME = h("00 00 00 0e | 00 00 00 04 | 00 00 00 01 | 00 00 00 01 00 00")
UPDATE_OFFSETS_RESPONSE = UpdateOffsetsResponse([OffsetUpdateStatus(1, Error())])


def test_produce_request_frame_is_records_md_10_4():
    assert encode_request(PRODUCE_REQUEST, 1) == PRODUCE_REQUEST_FRAME
    header, req = decode_request(PRODUCE_REQUEST_FRAME[4:], SPU_REQUESTS)
    assert header == RequestHeader(0, 24, 1, "fluvio")
    assert req == PRODUCE_REQUEST


def test_produce_response_frame_is_records_md_10_4():
    assert encode_response(PRODUCE_RESPONSE, 1, 24) == PRODUCE_RESPONSE_FRAME
    assert decode_response(PRODUCE_RESPONSE_FRAME[4:], ProduceResponse, 24) == (1, PRODUCE_RESPONSE)


def test_stream_fetch_request_frame_is_records_md_10_5():
    assert STREAM_FETCH_REQUEST.max_bytes == CLIENT_MAX_FETCH_BYTES
    assert encode_request(STREAM_FETCH_REQUEST, 2) == STREAM_FETCH_REQUEST_FRAME
    header, req = decode_request(STREAM_FETCH_REQUEST_FRAME[4:], SPU_REQUESTS)
    assert header == RequestHeader(1003, 24, 2, "fluvio")
    assert req == STREAM_FETCH_REQUEST


def test_stream_fetch_response_frame_is_records_md_10_5():
    assert encode_response(STREAM_FETCH_RESPONSE, 2, 24) == STREAM_FETCH_RESPONSE_FRAME
    assert decode_response(STREAM_FETCH_RESPONSE_FRAME[4:], StreamFetchResponse, 24) == \
        (2, STREAM_FETCH_RESPONSE)


def test_stream_fetch_prefix_plus_stored_bytes_is_the_golden_frame():
    prefix = encode_stream_fetch_response_prefix(2, 24, "t", 1, 0, len(BATCH_A), high_watermark=1)
    assert prefix == STREAM_FETCH_RESPONSE_FRAME[: -len(BATCH_A)]
    assert struct.unpack_from(">i", prefix)[0] == len(STREAM_FETCH_RESPONSE_FRAME) - 4


def test_update_offsets_frames_are_records_md_10_5():
    assert encode_request(UPDATE_OFFSETS_REQUEST, 4) == UPDATE_OFFSETS_REQUEST_FRAME
    header, req = decode_request(UPDATE_OFFSETS_REQUEST_FRAME[4:], SPU_REQUESTS)
    assert header == RequestHeader(1005, 0, 4, "fluvio") and req == UPDATE_OFFSETS_REQUEST
    assert encode_response(UPDATE_OFFSETS_RESPONSE, 4, 0) == UPDATE_OFFSETS_RESPONSE_FRAME
    assert decode_response(UPDATE_OFFSETS_RESPONSE_FRAME[4:], UpdateOffsetsResponse, 0) == \
        (4, UPDATE_OFFSETS_RESPONSE)


# ------------------------------------------------------- bodies: (class, version, object, bytes)

SM_AGGREGATE_WITH_LOOKBACK = SmartModuleInvocation(
    SmartModuleInvocationWasm.AdHoc(b"\x1f\x8b"), SmartModuleKind.Aggregate(b"0"),
    SmartModuleExtraParams({}, Lookback(last=10, age=1.5)))
SM_PREDEFINED_MAP = SmartModuleInvocation(
    SmartModuleInvocationWasm.Predefined("m"), SmartModuleKind.Map(), SmartModuleExtraParams({"k": "v"}))

BODIES = [
    ("produce-v24", ProduceRequest, 24, PRODUCE_REQUEST, PRODUCE_REQUEST_FRAME[20:]),
    ("produce-v7-readcommitted", ProduceRequest, 7, ProduceRequest(
        "tx", Isolation.ReadCommitted, 0, [TopicProduceData("ab", [
            PartitionProduceData(1, b""), PartitionProduceData(1, b"\x01\x02")])]), h("""
        01 00 02 74 78            # transactional_id Some("tx"): present even below v3
        ff ff                     # acks -1 (ReadCommitted)
        00 00 00 00               # timeout 0
        00 00 00 01  00 02 61 62  # 1 topic "ab"
        00 00 00 02               # 2 entries, the same partition twice
        00 00 00 01  00 00 00 00  #   partition 1, empty record set
        00 00 00 01  00 00 00 02 01 02   # partition 1, 2 bytes
        # no smartmodules below v8
    """)),
    ("produce-v24-smartmodule", ProduceRequest, 24, ProduceRequest(
        None, Isolation.ReadUncommitted, 1500, [], [SM_AGGREGATE_WITH_LOOKBACK]), h("""
        00  00 01  00 00 05 dc  00 00 00 00   # no txn id, acks 1, timeout 1500, 0 topics
        00 00 00 01               # 1 smartmodule
        01 00 00 00 02 1f 8b      #   wasm AdHoc, 2 bytes
        03 00 00 00 01 30         #   kind Aggregate, accumulator "0"
        00 00                     #   params: 0 entries
        01 00 00 00 00 00 00 00 0a             # lookback Some, last 10 [v20+]
        01 00 00 00 00 00 00 00 01 1d cd 65 00 # age Some 1.5 s [v21+]
    """)),
    ("produce-response-v24", ProduceResponse, 24, PRODUCE_RESPONSE, PRODUCE_RESPONSE_FRAME[8:]),
    ("produce-response-v0-error", ProduceResponse, 0, ProduceResponse([TopicProduceResponse("t", [
        PartitionProduceResponse(3, Error(ErrorCode.RequestTimedOut, (1500, 0)), 7)])]), h("""
        00 00 00 01  00 01 74  00 00 00 01
        00 00 00 03                           # partition_index 3
        00 07 00 00 00 00 00 00 05 dc 00      # RequestTimedOut{1500, Produce}
        00 00 00 00 00 00 00 07               # base_offset 7; nothing else below v1/v2/v5
    """)),
    ("stream-fetch-v24", StreamFetchRequest, 24, STREAM_FETCH_REQUEST, STREAM_FETCH_REQUEST_FRAME[20:]),
    ("stream-fetch-v24-full", StreamFetchRequest, 24, StreamFetchRequest(
        "t", 0, 0, CLIENT_MAX_FETCH_BYTES, Isolation.ReadCommitted,
        smartmodules=[SM_AGGREGATE_WITH_LOOKBACK], consumer_id="c1"), h("""
        00 01 74  00 00 00 00  00 00 00 00 00 00 00 00  00 10 01 3a
        01                        # isolation ReadCommitted
        00 00 00 01  01 00 00 00 02 1f 8b  03 00 00 00 01 30  00 00
        01 00 00 00 00 00 00 00 0a  01 00 00 00 00 00 00 00 01 1d cd 65 00
        01 00 02 63 31            # consumer_id Some("c1")
    """)),
    ("stream-fetch-v17", StreamFetchRequest, 17, StreamFetchRequest("t", 0, 5), h("""
        00 01 74                  # topic "t"
        00 00 00 00               # partition 0
        00 00 00 00 00 00 00 05   # fetch_offset 5
        00 10 01 3a               # max_bytes 1048890
        00                        # isolation
        00 00 00 00               # wasm_module: empty [v11..18]
        00                        # smartmodule None [v16..18]
        00                        # derivedstream None [v16..18]
    """)),
    ("stream-fetch-v17-legacy", StreamFetchRequest, 17, StreamFetchRequest(
        "t", 0, 5, 100, wasm_module=b"\xab\xcd", smartmodule=SM_PREDEFINED_MAP,
        derivedstream=DerivedStreamInvocation("ds", SmartModuleExtraParams())), h("""
        00 01 74  00 00 00 00  00 00 00 00 00 00 00 05  00 00 00 64  00
        00 00 00 02 ab cd         # wasm_module 2 bytes
        01                        # smartmodule Some
        00 00 01 6d               #   wasm Predefined "m"
        01                        #   kind Map
        00 01 00 01 6b 00 01 76   #   params {"k": "v"}; no lookback below v20
        01 00 02 64 73 00 00      # derivedstream Some: stream "ds", params {}
    """)),
    ("stream-fetch-v18-both", StreamFetchRequest, 18, StreamFetchRequest(
        "t", 1, 2, 3, smartmodule=SM_PREDEFINED_MAP, smartmodules=[SM_PREDEFINED_MAP]), h("""
        00 01 74  00 00 00 01  00 00 00 00 00 00 00 02  00 00 00 03  00
        00 00 00 00               # wasm_module empty
        01 00 00 01 6d 01 00 01 00 01 6b 00 01 76   # smartmodule Some(...)
        00                        # derivedstream None
        00 00 00 01 00 00 01 6d 01 00 01 00 01 6b 00 01 76   # smartmodules [...] [v18+]
    """)),
    ("stream-fetch-v10", StreamFetchRequest, 10, StreamFetchRequest("t", 0, 5, 100), h(
        "00 01 74  00 00 00 00  00 00 00 00 00 00 00 05  00 00 00 64  00")),
    ("stream-fetch-response-v24", StreamFetchResponse, 24, STREAM_FETCH_RESPONSE,
     STREAM_FETCH_RESPONSE_FRAME[8:]),
    ("stream-fetch-response-v10-error", StreamFetchResponse, 10, StreamFetchResponse(
        "t", 0, FetchablePartitionResponse(2, Error(ErrorCode.OffsetEvicted, (3, 10)), aborted=[])), h("""
        00 01 74  00 00 00 00  00 00 00 02
        00 47 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 0a   # OffsetEvicted{3, next 10}
        00 00 00 00 00 00 00 00   # high_watermark 0; no next_filter_offset below v11
        00 00 00 00 00 00 00 00   # log_start_offset 0
        01 00 00 00 00            # aborted Some([])
        00 00 00 00               # empty record set
    """)),
    ("update-offsets", UpdateOffsetsRequest, 0, UPDATE_OFFSETS_REQUEST, UPDATE_OFFSETS_REQUEST_FRAME[20:]),
    ("update-offsets-response", UpdateOffsetsResponse, 0, UPDATE_OFFSETS_RESPONSE,
     UPDATE_OFFSETS_RESPONSE_FRAME[8:]),
    ("fetch-offsets-v24", FetchOffsetsRequest, 24, FetchOffsetsRequest(
        [FetchOffsetTopic("t", [FetchOffsetPartition(0)])]),
     h("00 00 00 01 00 01 74 00 00 00 01 00 00 00 00")),  # records.md §10.5
    ("fetch-offsets-v23", FetchOffsetsRequest, 23, FetchOffsetsRequest(
        [FetchOffsetTopic("t", [FetchOffsetPartition(0)])], consumer_id="c"),
     h("00 00 00 01 00 01 74 00 00 00 01 00 00 00 00 | 01 00 01 63")),
    ("fetch-offsets-response", FetchOffsetsResponse, 24, FetchOffsetsResponse([FetchOffsetTopicResponse(
        "t", [FetchOffsetPartitionResponse(Error(), 0, 0, 1)])]), h(
        "00 00 00 01 00 01 74 00 00 00 01 | 00 00 | 00 00 00 00 | 00 00 00 00 00 00 00 00"
        "| 00 00 00 00 00 00 00 01")),  # records.md §10.5: error_code before partition_index
    ("update-consumer-offset", UpdateConsumerOffsetRequest, 24, UpdateConsumerOffsetRequest(41, 1),
     h("00 00 00 00 00 00 00 29 | 00 00 00 01")),
    ("update-consumer-offset-response", UpdateConsumerOffsetResponse, 24,
     UpdateConsumerOffsetResponse(0, Error(ErrorCode.FetchSessionNotFoud)),
     h("00 00 00 00 00 00 00 00 | 0b ba")),
    ("delete-consumer-offset", DeleteConsumerOffsetRequest, 24, DeleteConsumerOffsetRequest(
        ReplicaKey("t", 0), "c1"), h("00 01 74 00 00 00 00 | 00 02 63 31")),
    ("delete-consumer-offset-response", DeleteConsumerOffsetResponse, 24,
     DeleteConsumerOffsetResponse(Error(ErrorCode.PartitionNotLeader)), h("0b b9")),
    ("fetch-consumer-offsets-v24", FetchConsumerOffsetsRequest, 24, FetchConsumerOffsetsRequest(
        FilterOpts(ReplicaKey("t", 0), "c1")), h("""
        01                        # filter_opts Some
        01 00 01 74 00 00 00 00   #   replica_id Some("t", 0)
        01 00 02 63 31            #   consumer_id Some("c1")
    """)),
    ("fetch-consumer-offsets-v24-all", FetchConsumerOffsetsRequest, 24, FetchConsumerOffsetsRequest(),
     h("00")),
    ("fetch-consumer-offsets-v23", FetchConsumerOffsetsRequest, 23, FetchConsumerOffsetsRequest(), b""),
    ("fetch-consumer-offsets-response", FetchConsumerOffsetsResponse, 24, FetchConsumerOffsetsResponse(
        Error(), [ConsumerOffset("c1", ReplicaKey("t", 0), 41, 1700000000)]), h("""
        00 00                     # error None
        00 00 00 01               # 1 consumer
        00 02 63 31               #   consumer_id "c1"
        00 01 74 00 00 00 00      #   replica_id ("t", 0)
        00 00 00 00 00 00 00 29   #   offset 41
        00 00 00 00 65 53 f1 00   #   modified_time 1700000000 s
    """)),
    ("fetch-v24", FetchRequest, 24, FetchRequest(
        100, 1, 1 << 20, Isolation.ReadUncommitted,
        [FetchableTopic("t", [FetchPartition(0, -1, 7, 0, 1000)])], [ForgottenTopic("x", [1])]), h("""
        00 00 00 64               # max_wait 100
        00 00 00 01               # min_bytes 1
        00 10 00 00               # max_bytes [v3+]
        00                        # isolation_level [v4+]
        00 00 00 01  00 01 74  00 00 00 01
        00 00 00 00               #   partition_index 0
        ff ff ff ff               #   current_leader_epoch -1 [v9+]
        00 00 00 00 00 00 00 07   #   fetch_offset 7
        00 00 00 00 00 00 00 00   #   log_start_offset [v5+]
        00 00 03 e8               #   max_bytes 1000
        00 00 00 01  00 01 78  00 00 00 01 00 00 00 01   # forgotten [("x", [1])] [v7+]
    """)),
    ("fetch-v0", FetchRequest, 0, FetchRequest(
        100, 1, topics=[FetchableTopic("t", [FetchPartition(0, fetch_offset=7, max_bytes=1000)])]), h("""
        00 00 00 64  00 00 00 01
        00 00 00 01  00 01 74  00 00 00 01  00 00 00 00  00 00 00 00 00 00 00 07  00 00 03 e8
    """)),
    ("fetch-response-v24", FetchResponse, 24, FetchResponse(0, Error(), 0, [FetchableTopicResponse(
        "t", [FetchablePartitionResponse(0, Error(), 1, 0, 0, [AbortedTransaction(5, 6)], b"")])]), h("""
        00 00 00 00  00 00  00 00 00 00   # throttle, error None, session_id
        00 00 00 01  00 01 74  00 00 00 01
        00 00 00 00  00 00                # partition 0, error None
        00 00 00 00 00 00 00 01           # high_watermark 1
        00 00 00 00 00 00 00 00           # next_filter_offset [v11+]
        00 00 00 00 00 00 00 00           # log_start_offset
        01 00 00 00 01 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 06   # aborted Some([(5, 6)])
        00 00 00 00                       # empty record set
    """)),
]


def decode_at(cls, data, version):
    r = Reader(data)
    return cls.wire_decode(r, version), r.pos


@pytest.mark.parametrize("cls,version,obj,data", [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_body_golden_three_ways(cls, version, obj, data):
    assert obj.encode(version) == data
    assert decode_at(cls, data, version) == (obj, len(data))
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_at(cls, data[:cut], version)
    assert decode_at(cls, data + b"\x01\xff\x00", version) == (obj, len(data))


REQUEST_FRAMES = {"produce-frame": PRODUCE_REQUEST_FRAME, "stream-fetch-frame": STREAM_FETCH_REQUEST_FRAME,
                  "update-offsets-frame": UPDATE_OFFSETS_REQUEST_FRAME} | {
    name: encode_request(obj, 9, version) for name, cls, version, obj, _ in BODIES
    if cls in SPU_REQUESTS.values()}


@pytest.mark.parametrize("frame", REQUEST_FRAMES.values(), ids=REQUEST_FRAMES.keys())
def test_request_frames_three_ways_through_decode_request(frame):
    payload = frame[4:]
    header, req = decode_request(payload, SPU_REQUESTS)
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            decode_request(payload[:cut], SPU_REQUESTS)
    assert decode_request(payload + b"\x00\x00\x00\x07", SPU_REQUESTS) == (header, req)
    assert encode_request(req, header.correlation_id, header.api_version) == frame


# --------------------------------------------------------------------------- semantics of fields


@pytest.mark.parametrize("raw,isolation", [
    (-32768, Isolation.ReadCommitted), (-2, Isolation.ReadCommitted), (-1, Isolation.ReadCommitted),
    (0, Isolation.ReadUncommitted), (1, Isolation.ReadUncommitted), (2, Isolation.ReadUncommitted),
    (32767, Isolation.ReadUncommitted)])
def test_acks_any_negative_is_read_committed(raw, isolation):
    assert ACKS.decode(Reader(struct.pack(">h", raw)), 24) == isolation


def test_acks_encode_read_committed_as_minus_one_and_uncommitted_as_one():
    w = bytearray()
    ACKS.encode(w, Isolation.ReadCommitted, 24)
    ACKS.encode(w, Isolation.ReadUncommitted, 24)
    assert bytes(w) == h("ff ff 00 01")
    assert ProduceRequest(isolation=Isolation.ReadCommitted).acks == -1
    assert ProduceRequest().acks == 1


def test_negative_produce_timeout_is_a_decode_error():
    body = h("00 00 01 ff ff ff ff 00 00 00 00 00 00 00 00")
    with pytest.raises(DecodeError, match="timeout_ms: negative"):
        decode_at(ProduceRequest, body, 24)
    with pytest.raises(DecodeError, match="timeout_ms: negative"):
        ProduceRequest.generic_wire_decode(Reader(body), 24)
    with pytest.raises(EncodeError):
        TIMEOUT_MS.encode(bytearray(), -1, 24)


def test_negative_record_set_length_is_a_decode_error():
    body = h("00 00 01 00 00 05 dc 00 00 00 01 00 01 74 00 00 00 01 00 00 00 00 ff ff ff ff")
    with pytest.raises(DecodeError, match="negative length"):
        decode_at(ProduceRequest, body, 24)
    with pytest.raises(DecodeError, match="negative length"):
        ProduceRequest.generic_wire_decode(Reader(body), 24)


def test_unknown_stream_fetch_isolation_and_smartmodule_tags_are_decode_errors():
    base = h("00 01 74 00 00 00 00 00 00 00 00 00 00 00 00 00 10 01 3a")
    with pytest.raises(DecodeError, match="Isolation"):
        decode_at(StreamFetchRequest, base + h("02 00 00 00 00 00"), 24)
    with pytest.raises(DecodeError, match="SmartModuleInvocationWasm"):
        decode_at(StreamFetchRequest, base + h("00 00 00 00 01 02"), 24)
    with pytest.raises(DecodeError, match="SmartModuleKind"):
        decode_at(StreamFetchRequest, base + h("00 00 00 00 01 00 00 00 08"), 24)


def test_every_smartmodule_kind_and_context_round_trips():
    kinds = [SmartModuleKind.Filter(), SmartModuleKind.Map(), SmartModuleKind.ArrayMap(),
             SmartModuleKind.Aggregate(b"acc"), SmartModuleKind.FilterMap(), SmartModuleKind.Join("t2"),
             SmartModuleKind.JoinStream("t2", "ds"),
             SmartModuleKind.Generic(SmartModuleContextData.None_()),
             SmartModuleKind.Generic(SmartModuleContextData.Aggregate(b"a")),
             SmartModuleKind.Generic(SmartModuleContextData.Join("t3")),
             SmartModuleKind.Generic(SmartModuleContextData.JoinStream("t3", "d"))]
    tags = [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7]
    for kind, tag in zip(kinds, tags):
        sm = SmartModuleInvocation(SmartModuleInvocationWasm.Predefined("x"), kind)
        data = sm.encode(24)
        assert data[4] == tag  # after the wasm tag and "x"
        assert SmartModuleInvocation.decode(data, 24) == sm
    assert SmartModuleKind.Generic(SmartModuleContextData.JoinStream("a", "b")).encode(24) == \
        h("03 00 01 61 00 01 62")


def test_lookback_is_gated_by_version():
    sm = SmartModuleExtraParams({"b": "2", "a": "1"}, Lookback(3, 2.25))
    assert sm.encode(19) == h("00 02 00 01 61 00 01 31 00 01 62 00 01 32")  # keys sorted
    assert sm.encode(20) == sm.encode(19) + h("01 00 00 00 00 00 00 00 03")
    assert sm.encode(21) == sm.encode(20) + h("01 00 00 00 00 00 00 00 02 0e e6 b2 80")
    assert SmartModuleExtraParams.decode(sm.encode(20), 20) == SmartModuleExtraParams(sm.params, Lookback(3))


# ------------------------------------------------------------ StreamFetch prefix for zero copy


@pytest.mark.parametrize("version", [0, 10, 11, 17, 24])
@pytest.mark.parametrize("kwargs", [
    {},
    {"high_watermark": 9, "next_filter_offset": 8, "log_start_offset": 2},
    {"error": Error(ErrorCode.SmartModuleRuntimeError, (SmartModuleTransformRuntimeError(
        "h", 5, 1, None, b"v"),)), "high_watermark": 1},
    {"aborted": [AbortedTransaction(1, 2)]},
    {"aborted": []},
], ids=["ok", "offsets", "error-with-records", "aborted", "aborted-empty"])
def test_prefix_plus_records_equals_the_full_encoding(version, kwargs):
    records = BATCH_A + BATCH_A
    full = StreamFetchResponse("topic-é", 7, FetchablePartitionResponse(
        partition_index=3, error_code=kwargs.get("error", Error()),
        high_watermark=kwargs.get("high_watermark", 0),
        next_filter_offset=kwargs.get("next_filter_offset", 0) if version >= 11 else 0,
        log_start_offset=kwargs.get("log_start_offset", 0), aborted=kwargs.get("aborted"),
        records=records))
    prefix = encode_stream_fetch_response_prefix(42, version, "topic-é", 7, 3, len(records), **kwargs)
    assert prefix + records == encode_response(full, 42, version)
    assert decode_response((prefix + records)[4:], StreamFetchResponse, version) == (42, full)


def test_prefix_rejects_values_that_do_not_fit():
    with pytest.raises(EncodeError):
        encode_stream_fetch_response_prefix(1, 24, "t", 1, 0, -1)
    with pytest.raises(EncodeError):
        encode_stream_fetch_response_prefix(1, 24, "t" * 40000, 1, 0, 0)
    with pytest.raises(EncodeError):
        encode_stream_fetch_response_prefix(1, 24, "t", -1, 0, 0)
    with pytest.raises(EncodeError):
        encode_stream_fetch_response_prefix(1, 24, "t", 1, 0, 0, error=Error(ErrorCode.Other, ("x",)),
                                            high_watermark=1 << 63)


# -------------------------------------------------------------------- registry and advertisement


def test_registry_covers_every_spu_api_key():
    assert set(SPU_REQUESTS) == set(SpuApiKey)
    assert SPU_REQUESTS[18] is ApiVersionsRequest
    for key, cls in SPU_REQUESTS.items():
        assert cls.API_KEY == key
        assert cls.MIN_API_VERSION <= cls.DEFAULT_API_VERSION <= cls.MAX_API_VERSION
    assert [int(k) for k in SpuApiKey] == [0, 1, 18, 1002, 1003, 1005, 1006, 1007, 1008]
    assert (UpdateOffsetsRequest.MIN_API_VERSION, UpdateOffsetsRequest.DEFAULT_API_VERSION,
            UpdateOffsetsRequest.MAX_API_VERSION) == (0, 0, 0)
    assert StreamFetchRequest.MIN_API_VERSION <= 17 and StreamFetchRequest.MAX_API_VERSION == 24


# The official client's (MIN, MAX) per request type (spu.md §1.1) and the version it must pick.
CLIENT_RANGES = {0: (0, 24, 24), 1002: (23, 24, 24), 1003: (23, 24, 24), 1005: (0, 0, 0),
                 1006: (23, 24, 24), 1007: (23, 24, 24), 1008: (23, 24, 24)}


def test_advertisement_keeps_the_client_at_v24_and_update_offsets_at_v0():
    resp = ApiVersionsResponse(Error(), list(SPU_API_VERSIONS), "0.0.0")
    assert {k.api_key: (k.min_version, k.max_version) for k in SPU_API_VERSIONS} == {
        0: (0, 24), 1: (0, 24), 1002: (0, 24), 1003: (0, 24), 1005: (0, 0),
        1006: (0, 24), 1007: (0, 24), 1008: (0, 24)}
    for key, (lo, hi, expected) in CLIENT_RANGES.items():
        assert resp.lookup_version(key, lo, hi) == expected
    assert ApiVersionsResponse.decode(resp.encode(2), 2) == resp


def test_unsupported_keys_and_versions_are_decode_errors_carrying_the_header():
    for key, version in ((2000, 24), (0, 25), (1005, 1), (1003, -1)):
        payload = struct.pack(">Hhi", key, version, 5) + h("00 00")
        with pytest.raises(UnsupportedRequest) as info:
            decode_request(payload, SPU_REQUESTS)
        assert info.value.header == RequestHeader(key, version, 5, "")


# ------------------------------------------------------------------------- errors.md payloads

ERROR_EXAMPLES = [
    (Error(ErrorCode.RequestTimedOut, (1500, 0)), "00 07 00 00 00 00 00 00 05 dc 00"),
    (Error(ErrorCode.OffsetEvicted, (3, 10)), "00 47 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 0a"),
    (Error(ErrorCode.PartitionFull, (("t", 0),)), "00 48 00 01 74 00 00 00 00"),
    (Error(ErrorCode.SmartModuleRuntimeError, (SmartModuleTransformRuntimeError("h", 5, 1, None, b"v"),)),
     "17 74 | 00 01 68 | 00 00 00 00 00 00 00 05 | 01 | 00 | 02 76"),
    (Error(ErrorCode.Other, ("x",)), "00 02 00 01 78"),
    (Error(ErrorCode.SmartModuleNotFound, ("m",)), "17 71 00 01 6d"),
    (Error(ErrorCode.SmartModuleChainInitError, ("smartmodules not supported",)),
     "17 75 00 1a" + "smartmodules not supported".encode().hex()),
]


@pytest.mark.parametrize("err,hexs", ERROR_EXAMPLES, ids=[e.code.name for e, _ in ERROR_EXAMPLES])
def test_errors_md_payloads_round_trip_through_error_code(err, hexs):
    data = h(hexs)
    w = bytearray()
    ERROR_CODE.encode(w, err, 24)
    assert bytes(w) == data
    r = Reader(data + b"\xff")
    assert ERROR_CODE.decode(r, 24) == err and r.pos == len(data)
    # and inside a message: an UpdateConsumerOffsetResponse ends with the error
    resp = UpdateConsumerOffsetResponse(0, err)
    assert UpdateConsumerOffsetResponse.decode(resp.encode(24), 24) == resp


def test_request_timed_out_message_is_fluvios_display_text():
    assert Error(ErrorCode.RequestTimedOut, (1500, 0)).message == \
        "the request 'Produce' exceeded the timeout 1500 ms"


# ----------------------------------------------------------------- hypothesis: every message

_INT_RANGES = {"b": 8, "h": 16, "i": 32, "q": 64}


def int_strategy(t: codec.Int) -> st.SearchStrategy:
    fmt = t.st.format[-1]
    if fmt == "d":
        return st.floats(allow_nan=False)
    bits = _INT_RANGES.get(fmt.lower())
    if fmt.islower():
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


TEXT = st.text(max_size=12)
ERROR_ARG = {
    "str": TEXT,
    "opt_str": st.none() | TEXT,
    "i64": int_strategy(codec.I64),
    "u64": int_strategy(codec.U64),
    "replica_key": st.tuples(TEXT, int_strategy(codec.U32)),
    "request_kind": st.just(0),
    "sm_runtime": st.builds(SmartModuleTransformRuntimeError, TEXT, int_strategy(codec.I64),
                            st.integers(0, 6), st.none() | st.binary(max_size=8), st.binary(max_size=8)),
    "sm_init": st.builds(SmartModuleInitRuntimeError, TEXT),
}


@st.composite
def errors(draw) -> Error:
    code = draw(st.sampled_from(list(ErrorCode)))
    return Error(code, tuple(draw(ERROR_ARG[k]) for k in PAYLOAD.get(code, ())))


def durations() -> st.SearchStrategy:
    # Exactly representable as (u64 seconds, u32 nanoseconds) through a float of seconds.
    return st.builds(lambda s, ns: s + ns / 1e9, st.integers(0, 1 << 20), st.integers(0, 999_999_999))


def strategy(t, version: int) -> st.SearchStrategy:
    t = codec.as_type(t)
    if isinstance(t, codec.Lazy):
        return strategy(t.get(), version)
    if isinstance(t, codec.Int):
        return int_strategy(t)
    if t is ACKS or isinstance(t, codec.Enum):
        return st.sampled_from(list(Isolation if t is ACKS else t.cls))
    if t is TIMEOUT_MS:
        return st.integers(0, (1 << 31) - 1)
    if isinstance(t, codec.Bool):
        return st.booleans()
    if isinstance(t, codec.Str):
        return TEXT
    if isinstance(t, (codec.Bytes, codec.RawRecords, codec.VarintBytes)):
        return st.binary(max_size=24)
    if isinstance(t, codec.Duration):
        return durations()
    if isinstance(t, codec.ErrorCodeType):
        return errors()
    if isinstance(t, codec.Opt):
        return st.none() | strategy(t.inner, version)
    if isinstance(t, codec.Vec):
        return st.lists(strategy(t.inner, version), max_size=3)
    if isinstance(t, codec.Map):
        return st.dictionaries(strategy(t.key, version), strategy(t.value, version), max_size=3)
    if isinstance(t, codec.Union):
        return st.one_of([messages(cls, version) for cls in t.variants.values()])
    if isinstance(t, codec.MessageType):
        return messages(t.cls, version)
    raise AssertionError(f"no strategy for {t!r}")


def messages(cls, version: int) -> st.SearchStrategy:
    """Instances of ``cls`` whose fields outside their version gate keep their defaults."""
    return st.builds(cls, **{name: strategy(t, version) for name, t, lo, hi in cls.WIRE_FIELDS
                             if lo <= version <= hi})


ALL_MESSAGES = [(req, req.MIN_API_VERSION, req.MAX_API_VERSION) for req in SPU_REQUESTS.values()] + [
    (req.Response, req.MIN_API_VERSION, req.MAX_API_VERSION) for req in SPU_REQUESTS.values()]


@pytest.mark.parametrize("cls,lo,hi", ALL_MESSAGES, ids=[m[0].__name__ for m in ALL_MESSAGES])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_round_trips(cls, lo, hi, data):
    version = data.draw(st.integers(lo, hi), label="version")
    obj = data.draw(messages(cls, version), label="message")
    encoded = obj.encode(version)
    assert decode_at(cls, encoded + b"\x00", version) == (obj, len(encoded))
    assert cls.decode(encoded, version).encode(version) == encoded


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_produce_decoder_agrees_with_the_generic_one(data):
    version = data.draw(st.integers(0, 24), label="version")
    obj = data.draw(messages(ProduceRequest, version), label="request")
    encoded = bytearray(obj.encode(version))
    for _ in range(data.draw(st.integers(0, 3), label="flips")):
        if encoded:
            i = data.draw(st.integers(0, len(encoded) - 1))
            encoded[i] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(encoded)), label="cut")
    buf = bytes(encoded[:cut])
    outcomes = []
    for decode in (decode_produce_request, ProduceRequest.generic_wire_decode):
        r = Reader(buf)
        try:
            outcomes.append((decode(r, version), r.pos))
        except DecodeError:
            outcomes.append(DecodeError)
    assert outcomes[0] == outcomes[1]


# ------------------------------------------------------------------ fuzz through decode_request


def try_decode(payload: bytes) -> None:
    try:
        decode_request(payload, SPU_REQUESTS)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_payloads_raise_only_decode_error(payload):
    try_decode(payload)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(sorted(SPU_REQUESTS)), version=st.integers(0, 24), body=st.binary(max_size=80))
def test_random_bodies_behind_a_valid_header_raise_only_decode_error(key, version, body):
    try_decode(struct.pack(">Hhi", key, version, 1) + h("00 00") + body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_truncated_and_bit_flipped_requests_raise_only_decode_error(data):
    cls = data.draw(st.sampled_from(list(SPU_REQUESTS.values())), label="class")
    version = data.draw(st.integers(cls.MIN_API_VERSION, cls.MAX_API_VERSION), label="version")
    payload = bytearray(encode_request(data.draw(messages(cls, version)), 3, version)[4:])
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(payload)), label="cut")
    try_decode(bytes(payload[:cut]))


@pytest.mark.parametrize("frame", [PRODUCE_REQUEST_FRAME, STREAM_FETCH_REQUEST_FRAME,
                                   UPDATE_OFFSETS_REQUEST_FRAME], ids=["produce", "stream-fetch", "update"])
def test_every_single_bit_flip_of_the_golden_requests_raises_only_decode_error(frame):
    payload = frame[4:]
    for i in range(len(payload)):
        for bit in range(8):
            flipped = bytearray(payload)
            flipped[i] ^= 1 << bit
            try_decode(bytes(flipped))
