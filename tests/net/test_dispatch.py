"""serve_api: the size cap before decoding, decode-or-refuse, ApiVersions, the gate, replies."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from fluvial.errors import OK, Error, ErrorCode
from fluvial.net.dispatch import (
    ApiRegistry, Refusal, RequestLimits, members_only, serve_api,
)
from fluvial.net.server import serve_connection
from fluvial.protocol import PLATFORM_VERSION
from fluvial.protocol.api import (
    ApiVersionKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, decode_request,
    decode_response, encode_request, encode_response, peek_api_key,
)
from fluvial.protocol.codec import ERROR_CODE, Reader
from fluvial.protocol.frame import FrameDecoder

from .conftest import ECHO_KEY, REGISTRY, EchoRequest, EchoResponse, Mode

CTX = SimpleNamespace(policy=None)


async def echo(ctx, conn, header, req):
    """The test API's handler: replies by mode, as a handler of a real server would."""
    mode = Mode(req.mode)
    if mode is Mode.FAIL:
        raise RuntimeError("handler failure requested by the test")
    if mode is Mode.CLOSE:
        return Refusal(Error(ErrorCode.PermissionDenied), close=True)
    if mode is Mode.STREAM:  # answers itself, on its correlation id
        for i in range(req.count):
            resp = EchoResponse(req.value + i, req.text, header.api_version)
            await conn.send(encode_response(resp, header.correlation_id, header.api_version))
        return None
    return EchoResponse(req.value, req.text, header.api_version)


class Peer:
    """The client end of one in-memory connection served by ``serve_api``."""

    def __init__(self, stream):
        self.stream = stream
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(struct.pack(">i", len(payload)) + payload)

    async def request(self, req, corr: int, version: int = 0) -> None:
        await self.stream.send_all(encode_request(req, corr, version))

    async def frame(self) -> bytes | None:
        """The next response payload; None once the server has closed the connection."""
        while not self.frames:
            data = await self.stream.receive_some()
            if not data:
                return None
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)


@pytest.fixture
async def serve(nursery):
    """``await serve(handler) -> Peer`` over an in-memory stream."""

    async def start(handler) -> Peer:
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(serve_connection, server, handler)
        return Peer(client)

    return start


def echo_api(**kwargs):
    return serve_api(ApiRegistry(REGISTRY), {ECHO_KEY: echo}, RequestLimits(1 << 20), CTX, **kwargs)


def error_of(payload: bytes) -> tuple[int, Error]:
    r = Reader(payload)
    (corr,) = r.unpack(struct.Struct(">i"), "correlation id")
    return corr, ERROR_CODE.decode(r, 0)


async def test_response_encoded_with_the_request_version_and_correlation_id(serve):
    with trio.fail_after(5):
        peer = await serve(echo_api())
        await peer.request(EchoRequest(7, "hi"), corr=41, version=1)
        corr, resp = decode_response(await peer.frame(), EchoResponse, 1)
        assert (corr, resp.value, resp.text, resp.version) == (41, 7, "hi", 1)


async def test_api_versions_answered_from_the_registry_with_the_platform_version(serve):
    with trio.fail_after(5):
        peer = await serve(echo_api())
        await peer.request(ApiVersionsRequest(), corr=1, version=2)
        corr, resp = decode_response(await peer.frame(), ApiVersionsResponse, 2)
        assert corr == 1 and resp.error_code == OK
        assert resp.platform_version == PLATFORM_VERSION
        assert [(k.api_key, k.min_version, k.max_version) for k in resp.api_keys] == [(ECHO_KEY, 0, 1)]

        table = [ApiVersionKey(1000, 3, 4)]
        peer = await serve(serve_api(ApiRegistry(REGISTRY, table), {ECHO_KEY: echo},
                                     RequestLimits(1 << 20), CTX))
        await peer.request(ApiVersionsRequest(), corr=2, version=2)
        _, resp = decode_response(await peer.frame(), ApiVersionsResponse, 2)
        assert resp.api_keys == table


async def test_a_handler_that_answers_itself_returns_none(serve):
    with trio.fail_after(5):
        peer = await serve(echo_api())
        await peer.request(EchoRequest(10, "s", Mode.STREAM, 3), corr=5)
        values = [decode_response(await peer.frame(), EchoResponse, 0) for _ in range(3)]
        assert [(c, r.value) for c, r in values] == [(5, 10), (5, 11), (5, 12)]
        await peer.request(EchoRequest(1), corr=6)
        assert decode_response(await peer.frame(), EchoResponse, 0)[0] == 6  # nothing else sent


async def test_a_refusal_is_an_error_frame_and_close_hangs_up(serve):
    with trio.fail_after(5):
        peer = await serve(echo_api())
        await peer.request(EchoRequest(1, mode=Mode.CLOSE), corr=9)
        assert error_of(await peer.frame()) == (9, Error(ErrorCode.PermissionDenied))
        assert await peer.frame() is None


async def test_oversized_request_closes_before_decoding(serve):
    decoded = []

    def spy(payload):
        decoded.append(payload)
        return decode_request(payload, REGISTRY)

    limits = RequestLimits(64, {ECHO_KEY: 200})
    handler = serve_api(ApiRegistry(REGISTRY, decode=spy), {ECHO_KEY: echo}, limits, CTX)
    with trio.fail_after(5):
        peer = await serve(handler)
        await peer.request(EchoRequest(1, "x" * 100), corr=1)  # under the key's own limit
        assert decode_response(await peer.frame(), EchoResponse, 0)[1].text == "x" * 100
        await peer.request(EchoRequest(2, "x" * 300), corr=2)
        assert await peer.frame() is None
        assert len(decoded) == 1
        peer = await serve(handler)
        await peer.request(ApiVersionsRequest(client_version="v" * 100), corr=3, version=2)
        assert await peer.frame() is None  # other keys get max_bytes
        assert len(decoded) == 1


async def test_unknown_key_answered_and_connection_kept(serve):
    with trio.fail_after(5):
        peer = await serve(echo_api())
        await peer.send(RequestHeader(4242, 0, 3).encode())
        corr, err = error_of(await peer.frame())
        assert corr == 3 and err.code == ErrorCode.Other and "4242" in err.message
        await peer.request(EchoRequest(1), corr=4, version=7)  # version out of range
        assert error_of(await peer.frame())[0] == 4
        await peer.request(EchoRequest(1), corr=5)
        assert decode_response(await peer.frame(), EchoResponse, 0)[0] == 5


async def test_the_registry_chooses_the_answer_to_an_unsupported_request(serve):
    def refuse(header, e):
        return EchoResponse(-1, f"no {header.api_key}", header.api_version)

    handler = serve_api(ApiRegistry(REGISTRY, refuse=refuse), {ECHO_KEY: echo},
                        RequestLimits(1 << 20), CTX)
    with trio.fail_after(5):
        peer = await serve(handler)
        await peer.send(RequestHeader(4242, 0, 3).encode())
        corr, resp = decode_response(await peer.frame(), EchoResponse, 0)
        assert (corr, resp.value, resp.text) == (3, -1, "no 4242")


async def test_undecodable_request_closes_the_connection(serve):
    with trio.fail_after(5):
        peer = await serve(echo_api())
        await peer.send(RequestHeader(ECHO_KEY, 0, 3).encode() + b"\x00")  # body cut short
        assert await peer.frame() is None


async def test_a_failing_handler_is_answered_and_the_connection_kept(serve):
    with trio.fail_after(5):
        peer = await serve(echo_api())
        await peer.request(EchoRequest(1, mode=Mode.FAIL), corr=8)
        corr, err = error_of(await peer.frame())
        assert corr == 8 and "internal error: RuntimeError" in err.message
        await peer.request(EchoRequest(2), corr=9)
        assert decode_response(await peer.frame(), EchoResponse, 0)[1].value == 2


class _NoOne:
    def allows(self, principal, action, kind=None, name=None):
        return False


async def test_members_only_gate_refuses_and_hangs_up_but_api_versions_passes(serve):
    ctx = SimpleNamespace(policy=_NoOne())
    handler = serve_api(ApiRegistry(REGISTRY), {ECHO_KEY: echo}, RequestLimits(1 << 20), ctx,
                        gate=members_only)
    with trio.fail_after(5):
        peer = await serve(handler)
        await peer.request(ApiVersionsRequest(), corr=1, version=2)
        assert decode_response(await peer.frame(), ApiVersionsResponse, 2)[1].error_code == OK
        await peer.request(EchoRequest(1), corr=2)
        assert error_of(await peer.frame()) == (2, Error(ErrorCode.PermissionDenied))
        assert await peer.frame() is None


async def test_a_gate_may_answer_with_a_typed_response(serve):
    def gate(ctx, conn, header, req):
        return EchoResponse(-7, "gated", header.api_version) if req.value < 0 else None

    handler = serve_api(ApiRegistry(REGISTRY), {ECHO_KEY: echo}, RequestLimits(1 << 20), CTX,
                        gate=gate)
    with trio.fail_after(5):
        peer = await serve(handler)
        await peer.request(EchoRequest(-1), corr=1)
        assert decode_response(await peer.frame(), EchoResponse, 0)[1].text == "gated"
        await peer.request(EchoRequest(1, "ok"), corr=2)
        assert decode_response(await peer.frame(), EchoResponse, 0)[1].text == "ok"


def test_every_served_key_needs_exactly_one_handler():
    with pytest.raises(ValueError):
        serve_api(ApiRegistry(REGISTRY), {}, RequestLimits(1), CTX)
    with pytest.raises(ValueError):
        serve_api(ApiRegistry(REGISTRY), {ECHO_KEY: echo, 1: echo}, RequestLimits(1), CTX)


def test_peek_api_key_reads_what_the_header_decoder_reads():
    payload = encode_request(EchoRequest(1), 5)[4:]
    assert peek_api_key(payload) == RequestHeader.read(Reader(payload)).api_key == ECHO_KEY
    assert peek_api_key(b"\x03") is None
