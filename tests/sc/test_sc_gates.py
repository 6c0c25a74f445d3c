"""The SC's gates and request caps: the private API serves only a connection registered as the
SPU a request names, the public API asks the policy ("read" for List and Watch, "admin" for the
rest), and each port refuses a request over its cap before decoding it."""

from __future__ import annotations

import struct
from contextlib import asynccontextmanager
from types import SimpleNamespace

import trio

from fluvial.errors import Error, ErrorCode
from fluvial.net.dispatch import Refusal
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol.api import API_VERSIONS_KEY, RequestHeader
from fluvial.protocol.frame import FrameDecoder
from fluvial.sc.private import MAX_PRIVATE_REQUEST_BYTES, private_gate
from fluvial.sc.public import MAX_CREATE_BYTES, MAX_REQUEST_BYTES, authorized
from fluvial.sc.server import ScConfig, serve_sc

OPEN = SimpleNamespace(policy=None)  # an SC without a policy: members are everyone


def conn_registered_as(spu_id: int | None) -> SimpleNamespace:
    state = {} if spu_id is None else {"spu_id": spu_id, "link": object()}
    return SimpleNamespace(peer=("127.0.0.1", 1), peer_cert=None, state=state)


def header(api_key: int) -> RequestHeader:
    return RequestHeader(api_key, 19, 1)


def test_private_requests_come_only_on_a_connection_registered_as_their_spu():
    hung_up = Refusal(Error(ErrorCode.PermissionDenied), close=True)
    for req in (ia.ReportReplicasRequest(1, []), ia.WatchReplicasRequest(1)):
        key = header(req.API_KEY)
        assert private_gate(OPEN, conn_registered_as(None), key, req) == hung_up
        assert private_gate(OPEN, conn_registered_as(2), key, req) == hung_up
        assert private_gate(OPEN, conn_registered_as(1), key, req) is None
    register = ia.RegisterSpuRequest(1, "127.0.0.1", 9001, "127.0.0.1", 9101)
    assert private_gate(OPEN, conn_registered_as(None), header(register.API_KEY), register) is None


class Grants:
    """A policy that grants ``actions`` on everything, to everyone."""

    def __init__(self, *actions: str):
        self.actions = actions

    def allows(self, principal, action, kind=None, name=None) -> bool:
        return action in self.actions


def test_list_and_watch_need_read_the_others_admin():
    conn = conn_registered_as(None)
    reads = [(sa.ScApiKey.List, sa.ObjectApiListRequest.of(so.TopicSpec)),
             (sa.ScApiKey.Watch, sa.ObjectApiWatchRequest.of(so.TopicSpec))]
    changes = [(sa.ScApiKey.Create, sa.ObjectApiCreateRequest.of("t", so.TopicSpec.computed(1, 1))),
               (sa.ScApiKey.Delete, sa.ObjectApiDeleteRequest.of(so.TopicSpec, "t"))]
    for key, req in reads:
        assert authorized(SimpleNamespace(policy=Grants("read")), conn, header(key), req) is None
        assert authorized(SimpleNamespace(policy=Grants("admin")), conn, header(key), req) == \
            Refusal(Error(ErrorCode.PermissionDenied))
    for key, req in changes:
        assert authorized(SimpleNamespace(policy=Grants("admin")), conn, header(key), req) is None
        status = authorized(SimpleNamespace(policy=Grants("read")), conn, header(key), req)
        assert (status.name, status.error_code.code) == ("t", ErrorCode.PermissionDenied)


@asynccontextmanager
async def sc_ports(tmp_path):
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_sc, ScConfig(data_dir=tmp_path, public_port=0, private_port=0))
        nursery.cancel_scope.cancel()


async def answer(port: int, api_key: int, body_bytes: int, version: int = 19) -> bytes | None:
    """Sends one request of ``api_key`` whose body is ``body_bytes`` zero bytes; its answer, or
    None when the SC hangs up instead."""
    payload = RequestHeader(api_key, version, 1).encode() + bytes(body_bytes)
    async with await trio.open_tcp_stream("127.0.0.1", port) as s:
        await s.send_all(struct.pack(">i", len(payload)) + payload)
        frames = FrameDecoder()
        while True:
            try:
                data = await s.receive_some()
            except trio.BrokenResourceError:
                return None
            if not data:
                return None
            for frame in frames.feed(data):
                return frame


async def test_each_port_closes_a_request_over_its_cap_before_decoding(tmp_path):
    with trio.fail_after(30):
        async with sc_ports(tmp_path) as (public, private):
            assert await answer(public, sa.ScApiKey.List, MAX_REQUEST_BYTES) is None
            # a Create may carry a SmartModule: decoded, and its zero label is no object type
            reply = await answer(public, sa.ScApiKey.Create, 2 * MAX_REQUEST_BYTES)
            assert sa.Status.decode(reply[4:], 19).error_code == Error.other("unknown admin object type")
            assert await answer(public, sa.ScApiKey.Create, MAX_CREATE_BYTES) is None
            # ApiVersions, which needs no registration, answered below the private cap only
            assert await answer(private, API_VERSIONS_KEY, 2 * MAX_REQUEST_BYTES, version=0) is not None
            assert await answer(private, API_VERSIONS_KEY, MAX_PRIVATE_REQUEST_BYTES, version=0) is None
