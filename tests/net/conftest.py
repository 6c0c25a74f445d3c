"""Fixtures for the transport tests: a test API, a server that speaks it, throwaway certificates.

Rules for network tests here (as in trio-websocket's tests): bind 127.0.0.1 port 0; put
``trio.fail_after`` around every test body; never sleep to synchronise: wait on events
(``EchoServer.wait_until``) or on the connection closing; timeouts run on ``autojump_clock``.
"""

from __future__ import annotations

import datetime
import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import ClassVar

import pytest
import trio

from fluvial.net.tls import common_name
from fluvial.net.server import ServerConnection, ServerLimits, listener_port, serve_tcp
from fluvial.protocol.api import (
    ApiVersionKey,
    ApiVersionsRequest,
    ApiVersionsResponse,
    Request,
    decode_request,
    encode_response,
)
from fluvial.protocol.codec import I8, I16, I32, RECORDS, STR, message, wire

ECHO_KEY = 9001


class Mode(IntEnum):
    REPLY = 0  # answer at once
    GATHER = 1  # hold until `count` GATHER requests are held, then answer all in reverse order
    STREAM = 2  # push `count` responses on one correlation id, then wait for `permits`
    FAIL = 3  # raise inside the handler
    HOLD = 4  # wait for one of the server's `permits`, then answer
    CLOSE = 5  # close the connection
    STRAY = 6  # send frames for correlation ids nobody waits for, then answer
    SHORT = 7  # answer with a frame too short to hold a correlation id
    SENDFILE = 8  # answer with conn.sendfile: file `text`, offset `value`, `count` bytes
    PARTS = 9  # answer with conn.send_parts, the body split in pieces
    EMPTY = 10  # answer with a correlation id and no body (does not decode)
    WHOAMI = 11  # answer with the client certificate's CN and DER length


@message
class EchoResponse:
    value: int = wire(I32)
    text: str = wire(STR)
    version: int = wire(I16)


@message
class EchoRequest(Request):
    API_KEY: ClassVar[int] = ECHO_KEY
    DEFAULT_API_VERSION: ClassVar[int] = 0
    MIN_API_VERSION: ClassVar[int] = 0
    MAX_API_VERSION: ClassVar[int] = 1
    Response: ClassVar[type] = EchoResponse

    value: int = wire(I32)
    text: str = wire(STR, default="")
    mode: int = wire(I8, default=Mode.REPLY)
    count: int = wire(I32, default=0)
    blob: bytes = wire(RECORDS, default=b"")  # a list of pieces when sent (a producer's batches)


REGISTRY = {ApiVersionsRequest.API_KEY: ApiVersionsRequest, ECHO_KEY: EchoRequest}
API_VERSIONS = ApiVersionsResponse(
    api_keys=[ApiVersionKey(18, 0, 2), ApiVersionKey(ECHO_KEY, 0, 1)], platform_version="0.17.3")


def reply_frame(corr: int, value: int, text: str = "", version: int = 0) -> bytes:
    return encode_response(EchoResponse(value, text, version), corr, version)


class EchoServer:
    """Handler state for the test API, observable from the test."""

    def __init__(self):
        self.port = 0
        self.started = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.pushed = 0
        self.connections: list[ServerConnection] = []
        self.permits = trio.Semaphore(0)
        self._gathered: list[tuple[ServerConnection, int, EchoRequest, int, trio.Event]] = []
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate) -> None:
        while not predicate():
            await self._changed.wait()

    async def handler(self, conn: ServerConnection, payload: bytes) -> None:
        header, req = decode_request(payload, REGISTRY)
        corr, version = header.correlation_id, header.api_version
        if conn not in self.connections:
            self.connections.append(conn)
        if isinstance(req, ApiVersionsRequest):
            await conn.send(encode_response(API_VERSIONS, corr, version))
            return
        self.started += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._notify()
        try:
            await self._handle(conn, corr, version, req)
        finally:
            self.in_flight -= 1
            self._notify()

    async def _handle(self, conn: ServerConnection, corr: int, version: int,
                      req: EchoRequest) -> None:
        mode = Mode(req.mode)
        if mode is Mode.REPLY:
            await conn.send(reply_frame(corr, req.value, req.text, version))
        elif mode is Mode.GATHER:
            done = trio.Event()
            self._gathered.append((conn, corr, req, version, done))
            if len(self._gathered) == req.count:
                held, self._gathered = self._gathered, []
                for c, co, r, v, ev in reversed(held):
                    await c.send(reply_frame(co, r.value, r.text, v))
                    ev.set()
            await done.wait()
        elif mode is Mode.STREAM:
            for i in range(req.count):
                await conn.send(reply_frame(corr, req.value + i, req.text, version))
                self.pushed += 1
                self._notify()
            await self.permits.acquire()
        elif mode is Mode.FAIL:
            raise RuntimeError("handler failure requested by the test")
        elif mode is Mode.HOLD:
            await self.permits.acquire()
            await conn.send(reply_frame(corr, req.value, req.text, version))
        elif mode is Mode.CLOSE:
            conn.close()
        elif mode is Mode.STRAY:
            await conn.send(reply_frame(corr + 1000, -1))
            await conn.send(reply_frame(-corr, -1))
            await conn.send(reply_frame(corr, req.value, req.text, version))
        elif mode is Mode.SHORT:
            await conn.send(struct.pack(">i", 2) + b"\x00\x01")
        elif mode is Mode.SENDFILE:
            with open(req.text, "rb") as f:
                prefix = struct.pack(">ii", 4 + req.count, corr)
                await conn.sendfile(prefix, f.fileno(), req.value, req.count)
        elif mode is Mode.EMPTY:
            await conn.send(struct.pack(">ii", 4, corr))
        elif mode is Mode.WHOAMI:
            cn = common_name(conn.peer_cert) or ""
            await conn.send(reply_frame(corr, len(conn.peer_cert_der or b""), cn, version))
        elif mode is Mode.PARTS:
            whole = reply_frame(corr, req.value, req.text, version)
            await conn.send_parts([whole[:6], whole[6:9], whole[9:]])


@pytest.fixture
async def start_echo_server(nursery):
    """``await start_echo_server(limits=..., ssl_context=...)`` -> a running EchoServer."""

    async def start(**kwargs) -> EchoServer:
        server = EchoServer()
        listeners = await nursery.start(
            partial(serve_tcp, server.handler, "127.0.0.1", 0, **kwargs))
        server.port = listener_port(listeners)
        return server

    return start


@pytest.fixture
async def echo_server(start_echo_server) -> EchoServer:
    return await start_echo_server()


async def read_until_closed(stream: trio.abc.Stream) -> bytes:
    """Everything the peer sends until it closes (EOF or reset)."""
    data = bytearray()
    while True:
        try:
            chunk = await stream.receive_some()
        except trio.BrokenResourceError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


# ------------------------------------------------------------------------------- certificates


@dataclass
class CertFiles:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str


def _mint(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(ca_key, ca_cert, cn, sans, usage):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    def write(filename, data):
        path = tmp_path / filename
        path.write_bytes(data)
        return str(path)

    def cert_pem(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key, ca_cert = ca("fluvial test CA")
    _, other_cert = ca("some other CA")
    server_key, server_cert = leaf(
        ca_key, ca_cert, "localhost",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH)
    client_key, client_cert = leaf(ca_key, ca_cert, "alice", [], ExtendedKeyUsageOID.CLIENT_AUTH)
    return CertFiles(
        ca=write("ca.pem", cert_pem(ca_cert)),
        server_cert=write("server.pem", cert_pem(server_cert)),
        server_key=write("server.key", key_pem(server_key)),
        client_cert=write("client.pem", cert_pem(client_cert)),
        client_key=write("client.key", key_pem(client_key)),
        other_ca=write("other-ca.pem", cert_pem(other_cert)),
    )


@pytest.fixture
def certs(tmp_path) -> CertFiles:
    return _mint(tmp_path)


@pytest.fixture
def echo_api():
    """The test API, for test modules (conftest is not imported directly)."""
    from types import SimpleNamespace

    return SimpleNamespace(EchoRequest=EchoRequest, EchoResponse=EchoResponse, Mode=Mode,
                           ServerLimits=ServerLimits, read_until_closed=read_until_closed,
                           reply_frame=reply_frame, REGISTRY=REGISTRY, API_VERSIONS=API_VERSIONS)
