"""SC public API frames: every captured request and validated response of sc.md §8 and README §8,
byte for byte in both directions, plus the TypeBuffer rules and property tests."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluvial.errors import PAYLOAD, Error, ErrorCode
from fluvial.protocol.api import (
    ApiVersionKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, UnsupportedRequest,
    decode_request, decode_response, encode_request, encode_response,
)
from fluvial.protocol.codec import DecodeError, EncodeError, Reader
from fluvial.protocol.sc_api import (
    CREATE_LABELS, DELETE_KEY_TYPES, SC_API_VERSIONS, SC_REQUESTS, UPDATE_TYPES,
    CommonCreateRequest, CreateRequest, DeleteRequest, ListFilter, ListRequest, Message,
    MetadataUpdate, MsgType, ObjectApiCreateRequest, ObjectApiDeleteRequest, ObjectApiListRequest,
    ObjectApiListResponse, ObjectApiUpdateRequest, ObjectApiWatchRequest, ObjectApiWatchResponse,
    ScApiKey, Status, UnknownObjectType, UpdateRequest, WatchRequest, decode_sc_request,
    sc_api_versions_response,
)
from fluvial.protocol.sc_objects import (
    ALL_SPECS, SPEC_BY_LABEL, AddMirror, AddPartition, AssignedReplicas, CompressionAlgorithm,
    ComputedReplicas, CustomSpuSpec, PartitionMap, PartitionSpec, SegmentBasedPolicy,
    SmartModuleSpec, SmartModuleWasm, SpuSpec, TableFormatSpec, TopicSpec, TopicStorageConfig,
)
# Golden objects and the wire-type-derived strategies are shared with the object tests.
from tests.protocol.test_sc_objects import (
    PARTITION_DEMO, SM, SPU, TOPIC_DEMO, metadata_strategy, strategy_for,
)


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


# ------------------------------------------------------------------------------ registry


def test_api_keys_and_request_constants():
    assert [int(k) for k in ScApiKey] == [18, 1001, 1002, 1003, 1004, 1005, 1006]
    table = {cls.API_KEY: (cls.MIN_API_VERSION, cls.MAX_API_VERSION, cls.DEFAULT_API_VERSION)
             for cls in SC_REQUESTS.values()}
    assert table == {18: (0, 2, 2), 1001: (9, 19, 19), 1002: (1, 19, 19), 1003: (15, 19, 19),
                     1004: (15, 19, 19), 1006: (1, 19, 19)}
    assert all(key == cls.API_KEY for key, cls in SC_REQUESTS.items())
    assert SC_REQUESTS[18] is ApiVersionsRequest
    assert ObjectApiCreateRequest.Response is Status
    assert ObjectApiDeleteRequest.Response is Status and ObjectApiUpdateRequest.Response is Status
    assert ObjectApiListRequest.Response is ObjectApiListResponse
    assert ObjectApiWatchRequest.Response is ObjectApiWatchResponse


# sc.md §2.2 (validated): the SC's ApiVersions answer to correlation id 1.
API_VERSIONS_RESPONSE = ("00000036 00000001 0000 00000006 03e9 0009 0013 03ea 0001 0013 03eb 000f 0013"
                         "03ec 000f 0013 03ed 000e 0013 03ee 0001 0013 0006 302e31372e33")


def test_validated_api_versions_advertisement():
    assert SC_API_VERSIONS == [ApiVersionKey(1001, 9, 19), ApiVersionKey(1002, 1, 19),
                               ApiVersionKey(1003, 15, 19), ApiVersionKey(1004, 15, 19),
                               ApiVersionKey(1005, 14, 19), ApiVersionKey(1006, 1, 19)]
    resp = sc_api_versions_response()
    assert encode_response(resp, 1, 2) == h(API_VERSIONS_RESPONSE)
    assert decode_response(h(API_VERSIONS_RESPONSE)[4:], ApiVersionsResponse, 2) == (1, resp)
    # The client then uses version 19 for every object request.
    for cls in (ObjectApiCreateRequest, ObjectApiDeleteRequest, ObjectApiListRequest,
                ObjectApiWatchRequest, ObjectApiUpdateRequest):
        assert resp.lookup_version(cls.API_KEY, cls.MIN_API_VERSION, cls.MAX_API_VERSION) == 19


def test_captured_api_versions_request_through_the_sc_registry():
    frame = h("0000002700120002000000010006666c7576696f0006302e31352e3200056c696e757800067838365f3634")
    header, req = decode_sc_request(frame[4:])
    assert header == RequestHeader(18, 2, 1, "fluvio")
    assert req == ApiVersionsRequest("0.15.2", "linux", "x86_64")
    assert encode_request(req, 1, 2, "fluvio") == frame
    myapp = h("00000026001200020000000100056d796170700006302e31352e3200056c696e757800067838365f3634")
    assert decode_sc_request(myapp[4:]) == (RequestHeader(18, 2, 1, "myapp"), req)


# ------------------------------------------------------------- captured request frames

TOPIC_CREATE = ObjectApiCreateRequest.of("demo", TopicSpec(ComputedReplicas(1, 1, True)))

CAPTURED_REQUESTS = [
    # (frame, client_id, correlation id, expected request) — sc.md §8.1, §8.6-§8.9
    ("0000002103ec001300000001000564756d6d79000353505500000009000000000000000000", "dummy", 1,
     ObjectApiWatchRequest("SPU", WatchRequest(0, False))),
    ("0000002703ec001300000002000564756d6d790009506172746974696f6e00000009000000000000000000", "dummy", 2,
     ObjectApiWatchRequest("Partition", WatchRequest(0, False))),
    ("0000002303ec001300000003000564756d6d790005546f70696300000009000000000000000000", "dummy", 3,
     ObjectApiWatchRequest("Topic", WatchRequest(0, False))),
    ("0000002303ec00130000000d000564756d6d790005546f70696300000009000000000000000001", "dummy", 13,
     ObjectApiWatchRequest.of(TopicSpec, summary=True)),
    ("0000003203e90013000000050006666c7576696f0005546f70696300000017000464656d6f0000010000000100000001010000040000",
     "fluvio", 5, TOPIC_CREATE),
    ("0000004603e90013000000040006666c7576696f0005546f7069630000002b0005742d7265740000010000000200000001010100"
     "00000e100101001e8480010000000001312d00040001", "fluvio", 4,
     ObjectApiCreateRequest.of("t-ret", TopicSpec(
         ComputedReplicas(2, 1, True), SegmentBasedPolicy(3600), TopicStorageConfig(2000000, 20000000),
         CompressionAlgorithm.Any, None, True))),
    ("0000003b03e90013000000050006666c7576696f0005546f706963000000200005742d6173670000000000000100000000000000"
     "0100001389000000040000", "fluvio", 5,
     ObjectApiCreateRequest.of("t-asg", TopicSpec(AssignedReplicas([PartitionMap(0, [5001])])))),
    ("0000003703e90013000000040006666c7576696f0005546f7069630000001c0005742d636667010100001388010000000100000001"
     "010000040000", "fluvio", 4,
     ObjectApiCreateRequest.of("t-cfg", TopicSpec(ComputedReplicas(1, 1, True)), dry_run=True,
                               timeout_ms=5000)),
    ("0000003803e90013000000040006666c7576696f000b536d6172744d6f64756c650000001700046d79736d00000000000000000800"
     "61736d01000000", "fluvio", 4,
     ObjectApiCreateRequest.of("mysm", SmartModuleSpec(
         wasm=SmartModuleWasm(payload=b"\x00asm\x01\x00\x00\x00")))),
    ("0000002203ea0013000000060006666c7576696f0005546f70696300000007000464656d6f00", "fluvio", 6,
     ObjectApiDeleteRequest.of(TopicSpec, "demo")),
    ("0000002103eb0013000000040006666c7576696f0005546f70696300000006000000000000", "fluvio", 4,
     ObjectApiListRequest.of(TopicSpec)),
    ("0000002503eb0013000000090006666c7576696f0009506172746974696f6e00000006000000000000", "fluvio", 9,
     ObjectApiListRequest.of(PartitionSpec)),
]
REQUEST_IDS = ["watch-spu", "watch-partition", "watch-topic", "watch-topic-summary", "create-demo",
               "create-t-ret", "create-t-asg", "create-t-cfg", "create-smartmodule", "delete-demo",
               "list-topics", "list-partitions"]


@pytest.mark.parametrize("frame,client_id,corr,expected", CAPTURED_REQUESTS, ids=REQUEST_IDS)
def test_captured_request_frames_decode_and_reencode(frame, client_id, corr, expected):
    data = h(frame)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    header, req = decode_sc_request(data[4:])
    assert header == RequestHeader(expected.API_KEY, 19, corr, client_id)
    assert type(req) is type(expected) and req == expected
    assert encode_request(expected, corr, 19, client_id) == data


@pytest.mark.parametrize("frame,client_id,corr,expected", CAPTURED_REQUESTS, ids=REQUEST_IDS)
def test_captured_request_frames_three_ways(frame, client_id, corr, expected):
    payload = h(frame)[4:]
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            decode_request(payload[:cut], SC_REQUESTS)
    assert decode_request(payload + b"\x00\xff\x01", SC_REQUESTS)[1] == expected
    # The body alone: a TypeBuffer that stops exactly at its end.
    body = payload[payload.index(expected.label.encode()) - 2:]
    r = Reader(body + b"\xee\xee")
    assert type(expected).wire_decode(r, 19) == expected
    assert r.pos == len(body)


def test_captured_fields_of_the_create_and_watch_requests():
    _, create = decode_sc_request(h(CAPTURED_REQUESTS[7][0])[4:])
    assert create.label == "Topic" and create.spec_class is TopicSpec
    assert create.request.common == CommonCreateRequest("t-cfg", True, 5000)
    assert create.request.spec.replicas == ComputedReplicas(1, 1, True)
    assert create.request.spec.compression_type is CompressionAlgorithm.Any
    _, watch = decode_sc_request(h(CAPTURED_REQUESTS[3][0])[4:])
    assert watch.request.summary is True and watch.request.epoch == 0


def test_list_request_with_filters_and_summary():
    req = ObjectApiListRequest.of(TopicSpec, ["demo"], summary=True)
    # sc.md §8.9: payload 00000001 0004 64656d6f 01 00
    assert req.encode(19) == h("0005 546f706963 0000000c 00000001 0004 64656d6f 01 00")
    assert req.request.filter_names() == ["demo"]
    assert ObjectApiListRequest.decode(req.encode(19)) == req


# ---------------------------------------------------------- validated response frames

SPU_WATCH = ("00000058 00000001 0003 535055 0000004b 0000000000000001 00000000 00000001"
             "000f 637573746f6d2d7370752d35303031 00001389 01 2332 00000001 01 0009 3132372e302e302e31 00 00"
             "2333 0009 3132372e302e302e31 00 00 00 00")
PARTITION_METADATA = ("0006 64656d6f2d30 00001389 00000001 00001389 00 00 04 00 00 00 01"
                      "00001389 0000000000000000 0000000000000000 00000000 00000000 0000000000000000 00"
                      "0000000000000000")
PARTITION_WATCH = ("0000006b 00000002 0009 506172746974696f6e 00000058 0000000000000001 00000000 00000001"
                   + PARTITION_METADATA)
TOPIC_METADATA = ("0004 64656d6f 01 00000001 00000001 01 00 00 04 00 00 04 0001 00000000 00000001 00001389"
                  "0000 0000")
TOPIC_WATCH = ("00000047 00000003 0005 546f706963 00000038 0000000000000001 00000000 00000001"
               + TOPIC_METADATA)
PARTITION_DELETE_PUSH = ("0000006c 00000002 0009 506172746974696f6e 00000059 0000000000000002 00000001 01"
                         + PARTITION_METADATA + "00000000")
TOPIC_UPDATE_PUSH = ("00000048 00000003 0005 546f706963 00000039 0000000000000003 00000001 00"
                     + TOPIC_METADATA + "00000000")
SM_WATCH = ("0000003a 00000006 000b 536d6172744d6f64756c65 00000025 0000000000000001 00000000 00000001"
            "0004 6d79736d 00 00 00 00000008 0061736d01000000")

VALIDATED_WATCH = [
    (SPU_WATCH, 1, ObjectApiWatchResponse.of(SpuSpec, 1, all=[SPU])),
    (PARTITION_WATCH, 2, ObjectApiWatchResponse.of(PartitionSpec, 1, all=[PARTITION_DEMO])),
    (TOPIC_WATCH, 3, ObjectApiWatchResponse.of(TopicSpec, 1, all=[TOPIC_DEMO])),
    (PARTITION_DELETE_PUSH, 2,
     ObjectApiWatchResponse.of(PartitionSpec, 2, changes=[Message(MsgType.DELETE, PARTITION_DEMO)])),
    (TOPIC_UPDATE_PUSH, 3,
     ObjectApiWatchResponse.of(TopicSpec, 3, changes=[Message(MsgType.UPDATE, TOPIC_DEMO)])),
    (SM_WATCH, 6, ObjectApiWatchResponse.of(SmartModuleSpec, 1, all=[SM])),
]
WATCH_IDS = ["spu", "partition", "topic", "partition-delete-push", "topic-update-push", "smartmodule"]


def test_the_spelled_out_frames_equal_the_documented_hex():
    assert h(SPU_WATCH).hex() == (
        "000000580000000100035350550000004b00000000000000010000000000000001000f637573746f6d2d7370752d3530"
        "303100001389012332000000010100093132372e302e302e310000233300093132372e302e302e3100000000")
    assert h(PARTITION_WATCH).hex() == (
        "0000006b000000020009506172746974696f6e0000005800000000000000010000000000000001000664656d6f2d3000"
        "001389000000010000138900000400000001000013890000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000")
    assert h(TOPIC_WATCH).hex() == (
        "00000047000000030005546f7069630000003800000000000000010000000000000001000464656d6f01000000010000"
        "000101000004000004000100000000000000010000138900000000")
    assert h(PARTITION_DELETE_PUSH).hex() == (
        "0000006c000000020009506172746974696f6e0000005900000000000000020000000101000664656d6f2d3000001389"
        "000000010000138900000400000001000013890000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000")
    assert h(TOPIC_UPDATE_PUSH).hex() == (
        "00000048000000030005546f7069630000003900000000000000030000000100000464656d6f01000000010000000101"
        "00000400000400010000000000000001000013890000000000000000")
    assert h(SM_WATCH).hex() == (
        "0000003a00000006000b536d6172744d6f64756c65000000250000000000000001000000000000000100046d79736d00"
        "0000000000080061736d01000000")


@pytest.mark.parametrize("frame,corr,expected", VALIDATED_WATCH, ids=WATCH_IDS)
def test_validated_watch_frames(frame, corr, expected):
    data = h(frame)
    assert encode_response(expected, corr, 19) == data
    assert decode_response(data[4:], ObjectApiWatchResponse, 19) == (corr, expected)
    check_response_three_ways(ObjectApiWatchResponse, data[8:], expected)


def test_partition_update_push_differs_from_the_delete_only_in_epoch_and_msg_type():
    resp = ObjectApiWatchResponse.of(PartitionSpec, 3, changes=[Message(MsgType.UPDATE, PARTITION_DEMO)])
    delete = bytearray(h(PARTITION_DELETE_PUSH))
    delete[4 + 4 + 11 + 4 + 7] = 3  # epoch 2 -> 3 (last byte of the i64)
    delete[4 + 4 + 11 + 4 + 8 + 4] = 0  # MsgType DELETE -> UPDATE
    assert encode_response(resp, 2, 19) == bytes(delete)


VALIDATED_STATUS = [
    ("0000000d00000008000464656d6f000000", 8, Status.new_ok("demo")),
    ("0000002a00000005000464656d6f07d201001b546f706963202764656d6f2720616c726561647920657869737473", 5,
     Status("demo", Error(ErrorCode.TopicAlreadyExists), "Topic 'demo' already exists")),
    ("0000000d00000006000464656d6f000000", 6, Status.new_ok("demo")),
    ("0000001800000007000464656d6f07d10100096e6f7420666f756e64", 7,
     Status("demo", Error(ErrorCode.TopicNotFound), "not found")),
    ("000000180000000400037379732ee10005746f706963000373797300", 4,
     Status("sys", Error(ErrorCode.SystemSpecDeletionAttempt, ("topic", "sys")), None)),
    ("000000260000000500056f746865720002000c637573746f6d206f746865720100086d73672068657265", 5,
     Status("other", Error.other("custom other"), "msg here")),
]


@pytest.mark.parametrize("frame,corr,expected", VALIDATED_STATUS,
                         ids=["create-ok", "create-exists", "delete-ok", "delete-not-found",
                              "delete-system", "other"])
def test_validated_status_frames(frame, corr, expected):
    data = h(frame)
    assert encode_response(expected, corr, 19) == data
    assert decode_response(data[4:], Status, 19) == (corr, expected)
    check_response_three_ways(Status, data[8:], expected)
    assert expected.is_error is (expected.error_code.code != ErrorCode.None_)


VALIDATED_LIST = [
    ("0000003b 00000004 0005 546f706963 0000002c 00000001" + TOPIC_METADATA, 4,
     ObjectApiListResponse.of(TopicSpec, [TOPIC_DEMO])),
    ("00000019 0000000a 000b 536d6172744d6f64756c65 00000004 00000000", 10,
     ObjectApiListResponse.of(SmartModuleSpec, [])),
    ("0000002e 00000005 000b 536d6172744d6f64756c65 00000019 00000001 0004 6d79736d 00 00 00"
     "00000008 0061736d01000000", 5, ObjectApiListResponse.of(SmartModuleSpec, [SM])),
    # sc.md §8.9 says the partition list "carries the Metadata of §8.3"; the frame is built from it.
    ("0000005f 00000004 0009 506172746974696f6e 0000004c 00000001" + PARTITION_METADATA, 4,
     ObjectApiListResponse.of(PartitionSpec, [PARTITION_DEMO])),
]


@pytest.mark.parametrize("frame,corr,expected", VALIDATED_LIST,
                         ids=["topics", "empty-smartmodules", "smartmodule", "partitions"])
def test_validated_list_frames(frame, corr, expected):
    data = h(frame)
    assert encode_response(expected, corr, 19) == data
    assert decode_response(data[4:], ObjectApiListResponse, 19) == (corr, expected)
    check_response_three_ways(ObjectApiListResponse, data[8:], expected)


def test_the_spelled_out_list_frames_equal_the_documented_hex():
    assert h(VALIDATED_LIST[0][0]).hex() == (
        "0000003b000000040005546f7069630000002c00000001000464656d6f01000000010000000101000004000004000100"
        "000000000000010000138900000000")
    assert h(VALIDATED_LIST[2][0]).hex() == (
        "0000002e00000005000b536d6172744d6f64756c65000000190000000100046d79736d000000000000080061736d0100"
        "0000")


def test_empty_table_format_answers():
    # sc.md §5.5: List is TypeBuffer{"TableFormat", len, 00000000}; Watch carries epoch, 0, 0.
    assert ObjectApiListResponse.of(TableFormatSpec, []).encode(19) == h(
        "000b 5461626c65466f726d6174 00000004 00000000")
    assert ObjectApiWatchResponse.of(TableFormatSpec, 5).encode(19) == h(
        "000b 5461626c65466f726d6174 00000010 0000000000000005 00000000 00000000")


def check_response_three_ways(cls, body: bytes, expected) -> None:
    r = Reader(body + b"\x07\x07")
    assert cls.wire_decode(r, 19) == expected
    assert r.pos == len(body)
    for cut in range(len(body)):
        with pytest.raises(DecodeError):
            cls.wire_decode(Reader(body[:cut]), 19)


# --------------------------------------------------------------------- TypeBuffer rules


def test_payload_is_decoded_inside_its_declared_window():
    # len says 10 for a 9-byte WatchRequest: the extra byte inside the window is skipped,
    # and what follows the window is left for the caller.
    body = h("0003 535055 0000000a 0000000000000007 01 ff") + b"\xaa"
    r = Reader(body)
    assert ObjectApiWatchRequest.wire_decode(r, 19) == ObjectApiWatchRequest("SPU", WatchRequest(7, True))
    assert r.pos == len(body) - 1
    # A payload that needs more than its window fails even when more bytes follow.
    with pytest.raises(DecodeError):
        ObjectApiWatchRequest.wire_decode(Reader(h("0003 535055 00000008 0000000000000007 01")), 19)


def test_declared_length_must_fit_the_remaining_bytes():
    with pytest.raises(DecodeError, match="payload length 4294967295"):
        ObjectApiWatchRequest.decode(h("0003 535055 ffffffff 0000000000000000 00"))


def test_unknown_label_is_an_unknown_object_type_with_the_header():
    payload = h("03ec 0013 00000009 0006 666c7576696f" "0009 436f6e6e6563746f72 00000009 0000000000000000 00")
    with pytest.raises(UnknownObjectType) as e:
        decode_sc_request(payload)
    assert e.value.label == "Connector" and e.value.api == "Watch"
    assert e.value.header == RequestHeader(1004, 19, 9, "fluvio")
    assert isinstance(e.value, DecodeError)


@pytest.mark.parametrize("req", [
    ObjectApiCreateRequest("Partition", CreateRequest(CommonCreateRequest("p"), PartitionSpec())),
    ObjectApiCreateRequest("SPU", CreateRequest(CommonCreateRequest("s"), SpuSpec())),
    ObjectApiDeleteRequest("Partition", DeleteRequest("demo-0")),
    ObjectApiUpdateRequest("Mirror", UpdateRequest("m", "x")),
    ObjectApiUpdateRequest("Partition", UpdateRequest("p", "x")),
])
def test_labels_an_operation_does_not_handle(req):
    # Hand-build a well-formed TypeBuffer with that label (our encoder refuses it).
    with pytest.raises(EncodeError):
        req.encode(19)
    spec_payload = b"\x00" * 64
    body = len(req.label).to_bytes(2, "big") + req.label.encode() + len(spec_payload).to_bytes(4, "big")
    with pytest.raises(UnknownObjectType):
        type(req).decode(body + spec_payload, 19)


def test_create_refuses_a_spec_of_another_kind():
    with pytest.raises(EncodeError):
        ObjectApiCreateRequest("Topic", CreateRequest(CommonCreateRequest("x"), SmartModuleSpec())).encode(19)


def test_classic_versions_are_refused():
    for cls, version in [(ObjectApiCreateRequest, 10), (ObjectApiDeleteRequest, 10),
                         (ObjectApiListRequest, 10), (ObjectApiWatchRequest, 9),
                         (ObjectApiListResponse, 10), (ObjectApiWatchResponse, 10)]:
        with pytest.raises(DecodeError, match="classic encoding"):
            cls.decode(h("0005 546f706963 00000006 000000000000"), version)
    with pytest.raises(EncodeError, match="classic encoding"):
        TOPIC_CREATE.encode(10)
    # Through the registry: a v10 delete is in range but classic; a v9 list is out of range.
    delete = encode_request(ObjectApiDeleteRequest.of(TopicSpec, "demo"), 1, 19)
    with pytest.raises(DecodeError, match="classic encoding"):
        decode_sc_request(delete[4:6] + (10).to_bytes(2, "big") + delete[8:])
    with pytest.raises(UnsupportedRequest):
        decode_sc_request(h("03eb 0009 00000001 0000 0005 546f706963 00000004 00000000"))
    with pytest.raises(UnsupportedRequest):
        decode_sc_request(h("03ed 0013 00000001 0000"))  # Mirroring: advertised, not decoded


def test_update_request_reads_the_length_at_every_version():
    req = ObjectApiUpdateRequest.of(TopicSpec, "demo", AddPartition(2))
    body = req.encode(19)
    assert body == h("0005 546f706963 0000000b 0004 64656d6f 00 00000002")
    assert ObjectApiUpdateRequest.decode(body, 1) == req
    with pytest.raises(EncodeError):
        req.encode(10)


def test_update_and_delete_key_types():
    mirror = ObjectApiUpdateRequest.of(TopicSpec, "demo", AddMirror("remote-1", True))
    assert ObjectApiUpdateRequest.decode(mirror.encode()) == mirror
    cspu = ObjectApiUpdateRequest.of(CustomSpuSpec, 5001, "action")
    assert cspu.encode() == h("0009 437573746f6d537075 00000010 0002 4964 00001389 0006 616374696f6e")
    assert ObjectApiUpdateRequest.decode(cspu.encode()) == cspu
    delete = ObjectApiDeleteRequest.of(CustomSpuSpec, "spu-a", force=True)
    assert delete.encode() == h("0009 437573746f6d537075 0000000e 0004 4e616d65 0005 7370752d61 01")
    assert ObjectApiDeleteRequest.decode(delete.encode()) == delete
    # force is [v>=13]
    old = ObjectApiDeleteRequest.of(TopicSpec, "demo", force=True)
    assert ObjectApiDeleteRequest.decode(old.encode(12), 12) == ObjectApiDeleteRequest.of(TopicSpec, "demo")
    # Processor: fluvial's own kind (processor_objects), never sent by the official client
    assert set(UPDATE_TYPES) == {"Topic", "SmartModule", "TableFormat", "SpuGroup", "CustomSpu", "Processor"}
    assert CREATE_LABELS == {"Topic", "SmartModule", "TableFormat", "SpuGroup", "CustomSpu", "Mirror",
                             "Processor"}


def test_lower_version_gates_of_inner_requests():
    create = ObjectApiCreateRequest.of("demo", TopicSpec.computed(1), timeout_ms=5)
    assert ObjectApiCreateRequest.decode(create.encode(11), 11).request.common.timeout == 5
    listing = ObjectApiListRequest.of(TopicSpec, summary=True, system=True)
    assert ObjectApiListRequest.decode(listing.encode(12), 12).request == ListRequest([], True, False)
    assert ListRequest([ListFilter("a")], True, True).encode(9) == h("00000001 0001 61")
    assert WatchRequest(3, True).encode(9) == h("0000000000000003")


# ------------------------------------------------------------------------- properties

_settings = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_labels = st.sampled_from(sorted(SPEC_BY_LABEL))
_creatable = st.sampled_from(sorted(CREATE_LABELS))


def _update_strategy(label):
    key_t, action_t = UPDATE_TYPES[label]
    return st.builds(ObjectApiUpdateRequest, st.just(label),
                     st.builds(UpdateRequest, strategy_for(key_t), strategy_for(action_t)))


def _watch_response(label):
    spec_cls = SPEC_BY_LABEL[label]
    meta = metadata_strategy(spec_cls)
    message = st.builds(Message, st.sampled_from(list(MsgType)), meta)
    update = st.builds(MetadataUpdate, st.integers(-2**63, 2**63 - 1), st.lists(message, max_size=2),
                       st.lists(meta, max_size=2))
    return st.builds(ObjectApiWatchResponse, st.just(label), update)


# Every ErrorCode whose payload is made of strings (all the codes an SC sends, sc.md §6).
_PAYLOAD_TEXT = {"str": st.text(max_size=6), "opt_str": st.none() | st.text(max_size=6)}
_errors = st.sampled_from(
    [c for c in ErrorCode if all(k in _PAYLOAD_TEXT for k in PAYLOAD.get(c, ()))]
).flatmap(lambda c: st.tuples(*[_PAYLOAD_TEXT[k] for k in PAYLOAD.get(c, ())]).map(
    lambda args: Error(c, args)))

REQUESTS = st.one_of(
    _creatable.flatmap(lambda label: st.builds(
        ObjectApiCreateRequest, st.just(label),
        st.builds(CreateRequest, strategy_for(CommonCreateRequest), strategy_for(SPEC_BY_LABEL[label])))),
    _creatable.flatmap(lambda label: st.builds(
        ObjectApiDeleteRequest, st.just(label),
        st.builds(DeleteRequest, strategy_for(DELETE_KEY_TYPES[label]), st.booleans()))),
    st.builds(ObjectApiListRequest, _labels, strategy_for(ListRequest)),
    st.builds(ObjectApiWatchRequest, _labels, strategy_for(WatchRequest)),
    st.sampled_from(sorted(UPDATE_TYPES)).flatmap(_update_strategy),
    st.builds(ApiVersionsRequest, st.text(max_size=6), st.text(max_size=6), st.text(max_size=6)),
)
RESPONSES = st.one_of(
    _labels.flatmap(lambda label: st.builds(
        ObjectApiListResponse, st.just(label), st.lists(metadata_strategy(SPEC_BY_LABEL[label]), max_size=3)))
    .map(lambda v: (ObjectApiListResponse, v)),
    _labels.flatmap(_watch_response).map(lambda v: (ObjectApiWatchResponse, v)),
    st.builds(Status, st.text(max_size=6), _errors, st.none() | st.text(max_size=6))
    .map(lambda v: (Status, v)),
)


@_settings
@given(REQUESTS, st.integers(-2**31, 2**31 - 1), st.text(max_size=6))
def test_every_request_round_trips_through_a_frame(req, corr, client_id):
    version = req.DEFAULT_API_VERSION
    frame = encode_request(req, corr, version, client_id)
    header, again = decode_sc_request(frame[4:])
    assert header == RequestHeader(req.API_KEY, version, corr, client_id)
    assert again == req
    assert encode_request(again, corr, version, client_id) == frame


@_settings
@given(RESPONSES, st.integers(-2**31, 2**31 - 1))
def test_every_response_round_trips_through_a_frame(case, corr):
    cls, resp = case
    frame = encode_response(resp, corr, 19)
    assert decode_response(frame[4:], cls, 19) == (corr, resp)


@_settings
@given(REQUESTS, st.data())
def test_truncated_and_bit_flipped_requests_raise_only_decode_error(req, data):
    payload = bytearray(encode_request(req, 1, req.DEFAULT_API_VERSION)[4:])
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError):
        decode_sc_request(bytes(payload[:cut]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        decode_sc_request(bytes(payload))
    except DecodeError:
        pass


@_settings
@given(RESPONSES, st.data())
def test_truncated_and_bit_flipped_responses_raise_only_decode_error(case, data):
    cls, resp = case
    payload = bytearray(encode_response(resp, 1, 19)[4:])
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError):
        decode_response(bytes(payload[:cut]), cls, 19)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        decode_response(bytes(payload), cls, 19)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([18, 1001, 1002, 1003, 1004, 1006]), st.integers(0, 20),
       st.sampled_from([b"", b"\x00\x05Topic", b"\x00\x03SPU", b"\x00\x0bSmartModule", b"\x00\x09CustomSpu"]),
       st.binary(max_size=80))
def test_random_bodies_raise_only_decode_error(api_key, version, prefix, junk):
    payload = api_key.to_bytes(2, "big") + version.to_bytes(2, "big") + b"\x00\x00\x00\x01\x00\x00"
    body = prefix + (len(junk).to_bytes(4, "big") if prefix and junk[:1] != b"\xff" else b"") + junk
    try:
        decode_sc_request(payload + body)
    except DecodeError:
        pass
    for cls in (Status, ObjectApiListResponse, ObjectApiWatchResponse):
        try:
            decode_response(b"\x00\x00\x00\x01" + body, cls, version)
        except DecodeError:
            pass


def test_all_specs_have_a_list_and_watch_codec():
    for spec_cls in ALL_SPECS:
        assert ObjectApiListRequest.decode(ObjectApiListRequest.of(spec_cls).encode()).spec_class is spec_cls
        empty = ObjectApiWatchResponse.of(spec_cls, 0)
        assert ObjectApiWatchResponse.decode(empty.encode()) == empty
