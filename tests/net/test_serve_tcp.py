"""serve_tcp: dispatch, isolation of bad connections, backpressure, limits and timeouts."""

import functools
import random
import struct

import pytest
import trio
import trio.testing

from fluvial.errors import ConnectionLost
from fluvial.net.errors import LocalProtocolError
from fluvial.net.multiplexer import open_connection
from fluvial.net.server import (
    ServerConnection,
    ServerLimits,
    listener_port,
    serve_connection,
    serve_tcp,
)
from fluvial.protocol.api import ApiVersionsRequest, encode_request, encode_response
from fluvial.protocol.frame import frame


async def test_api_versions_answered_and_version_negotiated(echo_server, echo_api):
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            assert conn.version_for(echo_api.EchoRequest) == 0  # no handshake yet: the default
            resp = await conn.handshake()
            assert resp.platform_version == "0.17.3"
            assert conn.versions is resp
            assert conn.version_for(echo_api.EchoRequest) == 1
            assert conn.version_for(ApiVersionsRequest) == 2
            echoed = await conn.call(echo_api.EchoRequest(5, "hi"))
            assert (echoed.value, echoed.text, echoed.version) == (5, "hi", 1)


async def test_official_client_first_exchange_with_repeated_correlation_ids(echo_server, echo_api):
    # The official client sends ApiVersions with id 1 on a plain socket, then restarts at 1.
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
        await stream.send_all(encode_request(ApiVersionsRequest(), 1, 2, "fluvio"))
        await stream.send_all(encode_request(echo_api.EchoRequest(11), 1, 0, "fluvio")
                              + encode_request(echo_api.EchoRequest(12), 2, 0, "fluvio"))
        want = (encode_response(echo_api.API_VERSIONS, 1, 2)
                + echo_api.reply_frame(1, 11) + echo_api.reply_frame(2, 12))
        got = bytearray()
        while len(got) < len(want):
            got += await stream.receive_some()
        assert bytes(got) == want
        await stream.aclose()


async def test_handlers_run_concurrently_on_one_connection(echo_server, echo_api):
    # Three requests held by the server at once, answered in reverse order.
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            results = {}

            async def one(i):
                results[i] = await conn.call(E(i, f"n{i}", M.GATHER, 3), 0)

            async with trio.open_nursery() as n:
                for i in range(3):
                    n.start_soon(one, i)
            assert {i: (r.value, r.text) for i, r in results.items()} == {
                0: (0, "n0"), 1: (1, "n1"), 2: (2, "n2")}
            assert echo_server.max_in_flight == 3


@pytest.mark.parametrize("size", [0x7FFFFFFF, 64 * 1024 * 1024 + 1, -1, -0x80000000])
async def test_bad_size_prefix_closes_only_that_connection(echo_server, echo_api, size, caplog):
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as good:
            assert (await good.call(echo_api.EchoRequest(1), 0)).value == 1
            bad = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
            await bad.send_all(struct.pack(">i", size) + b"\x00" * 16)
            assert await echo_api.read_until_closed(bad) == b""
            await bad.aclose()
            assert (await good.call(echo_api.EchoRequest(2), 0)).value == 2
    assert "bad frame" in caplog.text


@pytest.mark.parametrize("seed", range(4))
async def test_garbage_bytes_close_only_that_connection(echo_server, echo_api, seed):
    rng = random.Random(seed)
    garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(8, 4096)))
    # A garbage frame that is well-formed but undecodable must also be survived.
    garbage = frame(garbage[:50]) + garbage
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as good:
            bad = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
            try:
                await bad.send_all(garbage)
            except trio.BrokenResourceError:
                pass  # the server may reset us before we finish
            await echo_api.read_until_closed(bad)
            await bad.aclose()
            assert (await good.call(echo_api.EchoRequest(seed), 0)).value == seed, f"seed={seed}"


async def test_handler_exception_closes_that_connection_and_is_logged(echo_server, echo_api,
                                                                      caplog):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as other:
            async with open_connection("127.0.0.1", echo_server.port) as conn:
                with pytest.raises(ConnectionLost):
                    await conn.call(E(0, "", M.FAIL), 0)
                await conn.wait_closed()
                with pytest.raises(ConnectionLost):
                    await conn.call(E(1), 0)
            assert (await other.call(E(3), 0)).value == 3
    assert "handler failed" in caplog.text
    assert "handler failure requested by the test" in caplog.text


async def test_max_in_flight_stops_reading_until_a_handler_finishes(start_echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    server = await start_echo_server(limits=ServerLimits(max_in_flight=2))
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", server.port) as conn:
            answered = []

            async def one(i):
                answered.append((await conn.call(E(i, "", M.HOLD), 0)).value)

            async with trio.open_nursery() as n:
                for i in range(5):
                    n.start_soon(one, i)
                await server.wait_until(lambda: server.started == 2)
                await trio.testing.wait_all_tasks_blocked()
                # Every frame is in the server's socket buffer by now; two may run.
                assert (server.started, server.in_flight) == (2, 2)
                server.permits.release()
                await server.wait_until(lambda: server.started == 3)
                await trio.testing.wait_all_tasks_blocked()
                assert (server.started, server.in_flight) == (3, 2)
                for _ in range(4):
                    server.permits.release()
            assert sorted(answered) == [0, 1, 2, 3, 4]
            assert server.max_in_flight == 2


async def test_connections_over_the_global_limit_are_closed(start_echo_server, echo_api):
    server = await start_echo_server(limits=ServerLimits(max_connections=2))
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", server.port) as a:
            assert (await a.call(echo_api.EchoRequest(1), 0)).value == 1
            async with open_connection("127.0.0.1", server.port) as b:
                assert (await b.call(echo_api.EchoRequest(2), 0)).value == 2
                extra = await trio.open_tcp_stream("127.0.0.1", server.port)
                assert await echo_api.read_until_closed(extra) == b""
                await extra.aclose()
            # b is gone: a third connection is accepted once the server has noticed.
            await server.connections[1].closed.wait()
            await trio.testing.wait_all_tasks_blocked()
            async with open_connection("127.0.0.1", server.port) as c:
                assert (await c.call(echo_api.EchoRequest(3), 0)).value == 3


async def test_connections_over_the_per_ip_limit_are_closed(start_echo_server, echo_api):
    server = await start_echo_server(limits=ServerLimits(max_connections_per_ip=1))
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", server.port) as a:
            assert (await a.call(echo_api.EchoRequest(1), 0)).value == 1
            extra = await trio.open_tcp_stream("127.0.0.1", server.port)
            assert await echo_api.read_until_closed(extra) == b""
            await extra.aclose()
            try:
                other_ip = await trio.open_tcp_stream("127.0.0.1", server.port,
                                                      local_address="127.0.0.2")
            except OSError:
                pytest.skip("127.0.0.2 is not a local address here")
            async with other_ip:
                await other_ip.send_all(encode_request(echo_api.EchoRequest(9), 1, 0))
                assert await other_ip.receive_some() == echo_api.reply_frame(1, 9)


async def test_first_frame_timeout_closes_a_silent_connection(start_echo_server, echo_api,
                                                              autojump_clock):
    server = await start_echo_server(limits=ServerLimits(first_frame_timeout_seconds=5))
    with trio.fail_after(60):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as silent:
            start = trio.current_time()
            assert await echo_api.read_until_closed(silent) == b""
            assert 5 <= trio.current_time() - start < 6
        # Half a frame does not count as the first frame either.
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as slow:
            start = trio.current_time()
            await slow.send_all(encode_request(echo_api.EchoRequest(1), 1, 0)[:7])
            assert await echo_api.read_until_closed(slow) == b""
            assert 5 <= trio.current_time() - start < 6


async def test_idle_timeout_spares_connections_with_a_running_handler(start_echo_server, echo_api,
                                                                      autojump_clock):
    E, M = echo_api.EchoRequest, echo_api.Mode
    server = await start_echo_server(limits=ServerLimits(idle_timeout_seconds=10))
    with trio.fail_after(300):
        async with open_connection("127.0.0.1", server.port) as conn:
            async with conn.open_stream(E(0, "", M.STREAM, 1), 0) as stream:
                assert (await stream.receive()).value == 0
                await trio.sleep(100)  # virtual time: the watch keeps the connection open
                assert (await conn.call(E(7), 0)).value == 7
                opened = trio.current_time()
                server.permits.release()  # the stream handler returns: now the connection idles
                await conn.wait_closed()
                assert 10 <= trio.current_time() - opened < 11


async def test_handlers_start_in_arrival_order(start_echo_server, echo_api):
    order = []

    async def handler(conn: ServerConnection, payload: bytes) -> None:
        order.append(payload)  # before the first await: must be arrival order
        await trio.lowlevel.checkpoint()
        await conn.send(frame(payload[:4]))

    left, right = trio.testing.memory_stream_pair()
    frames = [struct.pack(">i", i) + bytes(i % 7) for i in range(200)]
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(serve_connection, right, handler)
            await left.send_all(b"".join(frame(f) for f in frames))
            got = bytearray()
            while len(got) < 8 * len(frames):
                got += await left.receive_some()
            await left.aclose()
    assert order == frames


async def test_send_refuses_bytes_that_are_not_one_frame():
    left, right = trio.testing.memory_stream_pair()
    conn = ServerConnection(right, peer=("test", 0))
    with pytest.raises(LocalProtocolError):
        await conn.send(b"\x00\x00")
    with pytest.raises(LocalProtocolError):
        await conn.send(struct.pack(">i", 5) + b"four")
    with pytest.raises(LocalProtocolError):
        await conn.send_parts([struct.pack(">i", 5), b"ab", b"cd"])
    with pytest.raises(LocalProtocolError):
        await conn.sendfile(struct.pack(">i", 10), 0, 0, 9)
    await conn.send_parts([struct.pack(">i", 4), b"ab", b"cd"])
    assert await left.receive_some() == struct.pack(">i", 4) + b"abcd"


async def test_sendfile_and_send_parts_write_exact_frames(echo_server, echo_api, tmp_path):
    E, M = echo_api.EchoRequest, echo_api.Mode
    body = echo_api.reply_frame(0, 42, "x" * 30_000)[8:]  # an EchoResponse body, version 0
    path = tmp_path / "segment"
    path.write_bytes(b"junk" * 10 + body + b"trailing")
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            resp = await conn.call(E(40, str(path), M.SENDFILE, len(body)), 0)
            assert (resp.value, resp.text) == (42, "x" * 30_000)
            resp = await conn.call(E(9, "pieces", M.PARTS), 0)
            assert (resp.value, resp.text) == (9, "pieces")
            # A file shorter than announced cuts the frame: the connection must be closed.
            with pytest.raises(ConnectionLost):
                await conn.call(E(40, str(path), M.SENDFILE, len(body) + 100), 0)


async def test_sendfile_of_megabytes_waits_for_a_slow_reader(nursery, tmp_path):
    data = random.Random(1).randbytes(8 * 1024 * 1024)
    path = tmp_path / "big"
    path.write_bytes(data)

    async def handler(conn: ServerConnection, payload: bytes) -> None:
        with open(path, "rb") as f:
            await conn.sendfile(struct.pack(">i", len(data)), f.fileno(), 0, len(data))

    listeners = await nursery.start(serve_tcp, handler, "127.0.0.1", 0)
    with trio.fail_after(30):
        async with await trio.open_tcp_stream("127.0.0.1", listener_port(listeners)) as s:
            await s.send_all(frame(b"go"))
            got = bytearray()
            while len(got) < 4 + len(data):
                got += await s.receive_some(7919)  # small reads: the server's sends must block
    assert got[:4] == struct.pack(">i", len(data))
    assert got[4:] == data


async def test_sendfile_fallback_on_a_wrapped_stream(tmp_path):
    left, right = trio.testing.memory_stream_pair()
    conn = ServerConnection(right, peer=("test", 0))
    data = bytes(range(256)) * 5000
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        async with trio.open_nursery() as n:
            n.start_soon(conn.sendfile, struct.pack(">i", len(data) - 10), f.fileno(), 10,
                         len(data) - 10)
            got = bytearray()
            while len(got) < len(data) - 6:
                got += await left.receive_some()
    assert bytes(got) == struct.pack(">i", len(data) - 10) + data[10:]


async def test_stream_handlers_are_cancelled_when_the_client_goes(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            async with conn.open_stream(E(0, "", M.STREAM, 2), 0) as stream:
                assert [(await stream.receive()).value for _ in range(2)] == [0, 1]
                assert echo_server.in_flight == 1
        await echo_server.wait_until(lambda: echo_server.in_flight == 0)
        await echo_server.connections[0].closed.wait()


async def test_quick_requests_are_answered_by_the_reader_while_every_slot_is_taken():
    """A handler's ``runs_inline`` frames (a consumer's acknowledgements) run in the reader, in
    arrival order: they are answered while every request slot is held by a waiting handler,
    and one that raises closes only that connection, as any handler's."""
    release = trio.Event()
    order = []

    async def handler(conn: ServerConnection, payload: bytes) -> None:
        order.append(payload)
        if payload.startswith(b"hold"):
            await release.wait()
        elif payload == b"boom":
            raise RuntimeError("a bug in a quick handler")
        await conn.send(frame(payload))

    handler.runs_inline = lambda payload: not payload.startswith(b"hold")
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(functools.partial(serve_connection, right, handler,
                                           limits=ServerLimits(max_in_flight=1)))
            await left.send_all(frame(b"hold-1") + frame(b"ack-1") + frame(b"ack-2"))
            want = frame(b"ack-1") + frame(b"ack-2")
            got = b""
            while len(got) < len(want):
                got += await left.receive_some()
            assert got == want  # answered though the one slot is taken
            release.set()
            got = b""
            while len(got) < len(frame(b"hold-1")):
                got += await left.receive_some()
            assert got == frame(b"hold-1")
            await left.send_all(frame(b"boom"))
            assert await left.receive_some() == b""  # closed
    assert order == [b"hold-1", b"ack-1", b"ack-2", b"boom"]
