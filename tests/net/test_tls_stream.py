"""TlsStream, the TLS stream under serve_tcp and open_connection: whole bytes across many TLS
records in both directions at once, transport reads of any size, bounded reads, EOF with and
without close_notify, records that do not verify, cancellation."""

import os
import ssl
import struct

import pytest
import trio
import trio.testing

from fluvial.net.multiplexer import open_connection
from fluvial.net.tls import TlsStream, client_ssl_context, server_ssl_context

MiB = 1024 * 1024


def contexts(certs, tls_version=None):
    server_ctx = server_ssl_context(certs.server_cert, certs.server_key)
    client_ctx = client_ssl_context(certs.ca)
    if tls_version is not None:
        client_ctx.maximum_version = tls_version
    return server_ctx, client_ctx


async def handshaken(server: TlsStream, client: TlsStream) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)


async def tcp_pair(certs, tls_version=None) -> tuple[TlsStream, TlsStream]:
    server_ctx, client_ctx = contexts(certs, tls_version)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    try:
        client_tcp = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        server_tcp = await listener.accept()
    finally:
        await listener.aclose()
    server = TlsStream(server_tcp, server_ctx, server_side=True)
    client = TlsStream(client_tcp, client_ctx, server_hostname="localhost")
    await handshaken(server, client)
    return server, client


def memory_pair(certs, transport_receive_bytes: int) -> tuple[TlsStream, TlsStream, trio.abc.Stream]:
    """TLS over in-memory streams; also returns the client's raw transport."""
    server_ctx, client_ctx = contexts(certs)
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = TlsStream(server_raw, server_ctx, server_side=True,
                       transport_receive_bytes=transport_receive_bytes)
    client = TlsStream(client_raw, client_ctx, server_hostname="localhost",
                       transport_receive_bytes=transport_receive_bytes)
    return server, client, client_raw


async def receive_exactly(stream: trio.abc.Stream, n: int, max_bytes: int | None = None) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = await stream.receive_some(max_bytes)
        assert data, f"EOF after {len(out)} of {n} bytes"
        if max_bytes is not None:
            assert len(data) <= max_bytes
        out += data
    return bytes(out)


@pytest.mark.parametrize("tls_version", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
async def test_large_writes_cross_both_ways_at_once_whole(certs, tls_version):
    server, client = await tcp_pair(certs, tls_version)
    up, down = os.urandom(3 * MiB + 5), os.urandom(2 * MiB + 11)  # many 16 KiB records
    got = {}

    async def side(name, stream, payload, expect):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, payload)
            got[name] = await receive_exactly(stream, expect)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:  # both send before either reads: full duplex
            nursery.start_soon(side, "server", server, down, len(up))
            nursery.start_soon(side, "client", client, up, len(down))
    assert got == {"server": up, "client": down}
    assert server.version() == ("TLSv1.2" if tls_version else "TLSv1.3")
    await client.aclose()
    assert await server.receive_some() == b""  # close_notify
    await server.aclose()


async def test_bounded_reads_leave_the_rest_for_later(certs):
    server, client = await tcp_pair(certs)
    payload = os.urandom(200_000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            first = await server.receive_some(1000)
            assert 0 < len(first) <= 1000
            rest = await receive_exactly(server, len(payload) - len(first), 7777)
        assert first + rest == payload
    for s in (server, client):
        await s.aclose()


@pytest.mark.parametrize("transport_receive_bytes", [1, 3, 16_389])
async def test_any_transport_read_size_works_from_the_handshake_on(certs, transport_receive_bytes):
    server, client, _ = memory_pair(certs, transport_receive_bytes)
    with trio.fail_after(30):
        await handshaken(server, client)
        payload = os.urandom(20_000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            assert await receive_exactly(server, len(payload)) == payload
        await server.send_all(b"ack")
        assert await receive_exactly(client, 3) == b"ack"


async def test_a_read_asks_the_transport_for_what_the_caller_wants(certs):
    """A large ``receive_some`` reads the transport for that much (not only its usual read size)
    and comes back with every record that holds, in one call."""
    server, client, _ = memory_pair(certs, 16_389)
    with trio.fail_after(30):
        await handshaken(server, client)
        payload = os.urandom(200_000)
        await client.send_all(payload)  # all of it is in the memory transport now
        assert await server.receive_some(300_000) == payload


async def test_each_read_is_a_new_buffer_the_caller_keeps(certs):
    """The readers keep pieces of what ``receive_some`` returned without copying them
    (``FrameDecoder.feed(..., owned=True)``): no later read may write into an earlier one."""
    server, client = await tcp_pair(certs)
    payload = os.urandom(300_000)
    reads = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            got = 0
            while got < len(payload):
                reads.append(await server.receive_some(20_000))
                got += len(reads[-1])
    assert len(reads) > 1 and b"".join(reads) == payload
    for s in (server, client):
        await s.aclose()


async def test_send_now_writes_at_once_only_when_nothing_else_is_being_sent(certs):
    """``send_now`` encrypts and writes without a pause; while another send holds the stream
    (the peer reads nothing, so a large send waits) it does nothing, and the bytes leave in
    the order of the sends."""
    server, client = await tcp_pair(certs)
    big = os.urandom(8 * MiB)
    with trio.fail_after(20):
        assert client.send_now([b"fir", b"st"]) == b""  # the socket took it all
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, big)
            await trio.testing.wait_all_tasks_blocked()  # the socket is full: it waits
            assert client.send_now([b"late"]) is None
            assert await receive_exactly(server, 5, 5) == b"first"
            assert await receive_exactly(server, len(big), 65536) == big
        await client.send_all(b"last")
        assert await receive_exactly(server, 4) == b"last"
    for s in (server, client):
        await s.aclose()


async def test_eof_without_close_notify_breaks_the_stream(certs):
    server, client = await tcp_pair(certs)
    with trio.fail_after(10):
        await server.send_all(b"hi")
        # The client reads everything sent to it (session tickets too), so that closing its
        # socket sends a FIN, not a reset.
        assert await receive_exactly(client, 2) == b"hi"
        await client.send_all(b"last words")
        await client.transport_stream.aclose()  # the TCP connection ends, no close_notify
        assert await receive_exactly(server, 10) == b"last words"  # what came before is kept
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()
        with pytest.raises(trio.BrokenResourceError):  # and it stays broken
            await server.send_all(b"x")
    await server.aclose()


async def test_a_record_that_does_not_verify_breaks_the_stream(certs):
    server, client, client_raw = memory_pair(certs, 65536)
    with trio.fail_after(10):
        await handshaken(server, client)
        await client.send_all(b"fine")
        assert await receive_exactly(server, 4) == b"fine"
        # An application-data record of the right shape whose tag cannot verify.
        await client_raw.send_all(struct.pack(">BHH", 23, 0x0303, 64) + bytes(64))
        with pytest.raises(trio.BrokenResourceError) as info:
            await server.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLError)


async def test_cancelled_receive_loses_nothing(certs):
    server, client = await tcp_pair(certs)
    with trio.fail_after(10):
        with trio.move_on_after(0.05) as scope:
            await server.receive_some()
        assert scope.cancelled_caught
        await client.send_all(b"after the cancel")
        assert await receive_exactly(server, 16) == b"after the cancel"
    for s in (server, client):
        await s.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await server.receive_some()


async def test_handshake_failure_is_a_broken_resource(certs):
    server_ctx = server_ssl_context(certs.server_cert, certs.server_key)
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = TlsStream(server_raw, server_ctx, server_side=True)
    client = TlsStream(client_raw, client_ssl_context(certs.other_ca), server_hostname="localhost")
    causes = {}

    async def handshake(name, stream):
        with pytest.raises(trio.BrokenResourceError) as info:
            await stream.do_handshake()
        causes[name] = info.value.__cause__

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handshake, "server", server)
            nursery.start_soon(handshake, "client", client)
    # The client refuses the untrusted server, and tells it so with an alert.
    assert isinstance(causes["client"], ssl.SSLCertVerificationError)
    assert "UNKNOWN_CA" in str(causes["server"])
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"x")


async def test_a_large_frame_through_serve_tcp_and_open_connection(start_echo_server, echo_api,
                                                                   certs, tmp_path):
    """A 3 MiB response frame (the file path over TLS) arrives whole through the multiplexer."""
    body = os.urandom(3 * MiB)
    path = tmp_path / "segment"
    path.write_bytes(b"skip" + body)
    E, M = echo_api.EchoRequest, echo_api.Mode
    server = await start_echo_server(
        ssl_context=server_ssl_context(certs.server_cert, certs.server_key))
    with trio.fail_after(20):
        async with open_connection("127.0.0.1", server.port,
                                   ssl_context=client_ssl_context(certs.ca)) as conn:
            for _ in range(2):
                payload = await conn.send_request(E(4, str(path), M.SENDFILE, len(body)), 0)
                assert payload[4:] == body
            assert (await conn.call(E(9, "small"), 0)).text == "small"
    assert isinstance(server.connections[0]._stream, TlsStream)


class CountingStream(trio.abc.Stream):
    """A transport that counts its writes."""

    def __init__(self, inner: trio.abc.Stream):
        self.inner, self.writes = inner, 0

    async def send_all(self, data) -> None:
        self.writes += 1
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None):
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_parts_leave_in_order_in_one_transport_write(certs):
    server_ctx, client_ctx = contexts(certs)
    client_raw, server_raw = trio.testing.memory_stream_pair()
    counting = CountingStream(server_raw)
    server = TlsStream(counting, server_ctx, server_side=True)
    client = TlsStream(client_raw, client_ctx, server_hostname="localhost")
    big = os.urandom(100_000)
    with trio.fail_after(10):
        await handshaken(server, client)
        before = counting.writes
        await server.send_all_parts([b"\x00\x01", b"", memoryview(b"prefix"), bytearray(big)])
        assert counting.writes == before + 1
        assert await receive_exactly(client, 8 + len(big)) == b"\x00\x01prefix" + big
        await server.send_all_parts([])  # nothing to send: nothing written
        assert counting.writes == before + 1
