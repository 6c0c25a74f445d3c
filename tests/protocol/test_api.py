"""Request/response headers and ApiVersions (README §8 captured bytes, sc.md §2.2 validated)."""

import pytest

from fluvial.errors import Error, ErrorCode
from fluvial.protocol.api import (
    ApiVersionKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, UnsupportedRequest,
    decode_request, decode_response, encode_error_response, encode_request, encode_response,
)
from fluvial.protocol.codec import DecodeError

CAPTURED = "0000002700120002000000010006666c7576696f0006302e31352e3200056c696e757800067838365f3634"
CAPTURED_MYAPP = "00000026001200020000000100056d796170700006302e31352e3200056c696e757800067838365f3634"
REG = {18: ApiVersionsRequest}


def test_captured_api_versions_request_round_trips():
    frame = bytes.fromhex(CAPTURED)
    header, req = decode_request(frame[4:], REG)
    assert header == RequestHeader(18, 2, 1, "fluvio")
    assert req == ApiVersionsRequest("0.15.2", "linux", "x86_64")
    assert encode_request(req, 1) == frame
    assert encode_request(req, 1, client_id="myapp") == bytes.fromhex(CAPTURED_MYAPP)


def test_request_decoder_byte_by_byte_and_trailing():
    payload = bytes.fromhex(CAPTURED)[4:]
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            decode_request(payload[:cut], REG)
    assert decode_request(payload + b"\x00\x01", REG)[1].client_arch == "x86_64"


SC_VERSIONS = ApiVersionsResponse(Error(), [
    ApiVersionKey(1001, 9, 19), ApiVersionKey(1002, 1, 19), ApiVersionKey(1003, 15, 19),
    ApiVersionKey(1004, 15, 19), ApiVersionKey(1005, 14, 19), ApiVersionKey(1006, 1, 19)], "0.17.3")
SC_VERSIONS_HEX = ("0000003600000001000000000006" "03e900090013" "03ea00010013" "03eb000f0013"
                   "03ec000f0013" "03ed000e0013" "03ee00010013" "0006302e31372e33")


def test_validated_sc_api_versions_response():
    frame = bytes.fromhex(SC_VERSIONS_HEX)
    assert encode_response(SC_VERSIONS, 1, 2) == frame
    assert decode_response(frame[4:], ApiVersionsResponse, 2) == (1, SC_VERSIONS)
    for cut in range(4, len(frame) - 4):
        with pytest.raises(DecodeError):
            decode_response(frame[4:cut], ApiVersionsResponse, 2)


def test_lookup_version_follows_the_client_rule():
    assert SC_VERSIONS.lookup_version(1004, 15, 19) == 19
    assert SC_VERSIONS.lookup_version(1004, 15, 25) == 19
    assert SC_VERSIONS.lookup_version(1001, 20, 24) is None
    assert SC_VERSIONS.lookup_version(42, 0, 1) is None


def test_unknown_api_key_and_version_are_reported_with_the_header():
    with pytest.raises(UnsupportedRequest) as e:
        decode_request(bytes.fromhex("002a00000000000700000000"), REG)
    assert e.value.header.correlation_id == 7
    with pytest.raises(UnsupportedRequest, match="version 9"):
        decode_request(bytes.fromhex("0012000900000003" "0000"), REG)


def test_error_response_starts_with_the_error_code():
    frame = encode_error_response(7, Error.other("unknown api key 42"))
    assert frame[4:8] == b"\x00\x00\x00\x07"
    assert frame[8:10] == ErrorCode.Other.to_bytes(2, "big")
