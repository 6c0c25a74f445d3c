"""ServerConnection.send_regions: frames made of memory pieces and file pieces, on plain TCP
(sendmsg + os.sendfile) and on any other stream (the pieces read and copied)."""

from __future__ import annotations

import random
import struct

import pytest
import trio
import trio.testing

from fluvial.errors import ConnectionLost
from fluvial.net.server import FileRegion, ServerConnection
from fluvial.net.tls import TlsStream, client_ssl_context, server_ssl_context


async def tcp_pair(certs=None):
    """A connected (server side, client side) pair of trio.SocketStreams on 127.0.0.1; with
    ``certs``, of handshaken TlsStreams over them."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as n:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
        n.cancel_scope.cancel()
    for listener in listeners:
        await listener.aclose()
    if certs is not None:
        server = TlsStream(server, server_ssl_context(certs.server_cert, certs.server_key),
                           server_side=True)
        client = TlsStream(client, client_ssl_context(certs.ca), server_hostname="localhost")
        async with trio.open_nursery() as n:
            n.start_soon(server.do_handshake)
            n.start_soon(client.do_handshake)
    return server, client


async def receive_exactly(stream, n: int, step: int = 65536) -> bytes:
    got = bytearray()
    while len(got) < n:
        data = await stream.receive_some(min(step, n - len(got)))
        if not data:
            break
        got += data
    return bytes(got)


async def sent_and_received(send, client, n: int, step: int = 7919) -> bytes:
    """Run the ``send`` coroutine while reading ``n`` bytes in small steps (so that a large
    write has to wait for the reader); returns what was read."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: send)
        return await receive_exactly(client, n, step)


def frame_of(pieces: list, file_bytes: bytes) -> tuple[list, bytes]:
    """The send_regions pieces (a size prefix first) and the bytes they must put on the wire."""
    body = b"".join(file_bytes[p.offset:p.offset + p.count] if isinstance(p, FileRegion) else p
                    for p in pieces)
    prefix = struct.pack(">i", len(body))
    return [prefix, *pieces], prefix + body


@pytest.mark.parametrize("wrapped", [False, True], ids=["tcp", "memory-stream"])
async def test_memory_and_file_pieces_arrive_as_one_exact_frame(tmp_path, wrapped):
    rng = random.Random(7)
    data = rng.randbytes(3 * 1024 * 1024)
    path = tmp_path / "segment"
    path.write_bytes(data)
    shapes = [
        [FileRegion(0, 10, 70_000)],
        [b"head", FileRegion(0, 0, 1), b"", FileRegion(0, 5, 65_536), b"tail" * 100],
        [rng.randbytes(rng.randrange(1, 300)) for _ in range(1500)],  # more pieces than IOV_MAX
        [FileRegion(0, 1_000_000, 2 * 1024 * 1024 + 3), rng.randbytes(200_000)],
        [b"x" * 200_000, b"y" * 10, FileRegion(0, 0, 0)],
    ]
    with trio.fail_after(30), open(path, "rb") as f:
        if wrapped:
            server, client = trio.testing.memory_stream_pair()
        else:
            server, client = await tcp_pair()
        conn = ServerConnection(server, peer=("test", 0))
        assert conn.zero_copy is not wrapped
        for shape in shapes:
            pieces = [FileRegion(f.fileno(), p.offset, p.count) if isinstance(p, FileRegion) else p
                      for p in shape]
            parts, wire = frame_of(pieces, data)
            assert await sent_and_received(conn.send_regions(parts), client, len(wire)) == wire
        await server.aclose()
        await client.aclose()


async def test_send_parts_of_a_large_frame_wait_for_a_slow_reader():
    """sendmsg takes what the socket buffer holds; the rest follows, in order."""
    rng = random.Random(3)
    pieces = [rng.randbytes(rng.randrange(1, 70_000)) for _ in range(200)]
    parts, wire = frame_of(pieces, b"")
    with trio.fail_after(30):
        server, client = await tcp_pair()
        conn = ServerConnection(server, peer=("test", 0))
        assert await sent_and_received(conn.send_parts(parts), client, len(wire), 4093) == wire
        await server.aclose()
        await client.aclose()


@pytest.mark.parametrize("wrapped", [False, True], ids=["tcp", "memory-stream"])
async def test_a_file_that_changes_under_the_frame_cuts_it(tmp_path, wrapped):
    """``intact`` turns False once part of the region is out (the log was truncated): nothing
    more of the file is written, the frame stays cut and the connection closes. On a copying
    stream the bytes that did go out are the ones read before the change. (With sendfile the
    kernel sends from the page cache until the peer has the bytes, so a file rewritten in place
    shows through whatever is queued: the SPU sends only batches below the HW, which the log
    never rewrites in place.)"""
    size = 32 * 1024 * 1024  # well past what loopback socket buffers hold
    data = random.Random(5).randbytes(size)
    path = tmp_path / "segment"
    path.write_bytes(data)
    state = {"intact": True}
    with trio.fail_after(30), open(path, "r+b") as f:
        if wrapped:  # a write returns once the peer has read it all
            server, client = trio.testing.lockstep_stream_pair()
        else:
            server, client = await tcp_pair()
        conn = ServerConnection(server, peer=("test", 0))
        parts, wire = frame_of([FileRegion(f.fileno(), 0, size)], data)
        failure = []

        async def send():
            try:
                await conn.send_regions(parts, lambda: state["intact"])
            except ConnectionLost as exc:
                failure.append(exc)
            await server.aclose()

        async with trio.open_nursery() as n:
            n.start_soon(send)
            got = bytearray(await receive_exactly(client, 1024 * 1024, step=65536))
            state["intact"] = False
            if wrapped:  # rewritten in place, as appends after a truncation would
                f.seek(0)
                f.write(bytes(size))
                f.flush()
            while True:
                try:
                    chunk = await client.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                got += chunk
        assert failure and conn.closed.is_set()
        assert len(got) < len(wire)
        if wrapped:
            assert bytes(got) == wire[:len(got)]
        await client.aclose()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_a_frame_finding_the_send_lock_held_waits_for_it(certs, tls):
    """A frame is written at once (no pause before the write) only when no other frame is
    being written: while the lock is held, it waits its turn."""
    _, wire = frame_of([b"second"], b"")
    with trio.fail_after(10):
        server, client = await tcp_pair(certs if tls else None)
        async with server, client, trio.open_nursery() as n:
            conn = ServerConnection(server, peer=("test", 0))
            async with conn._send_lock:  # another frame is being written
                n.start_soon(conn.send, wire)
                await trio.testing.wait_all_tasks_blocked()
                assert conn.statistics().frames_sent == 0
            assert await receive_exactly(client, len(wire)) == wire
        assert conn.statistics().frames_sent == 1


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_a_frame_the_socket_takes_in_part_is_finished_before_the_next(certs, tls):
    """A frame larger than the socket's buffer: the caller writes what it can at once and the
    rest under the send lock, so a frame sent meanwhile comes whole, after it."""
    big, big_wire = frame_of([random.Random(3).randbytes(8 * 1024 * 1024)], b"")
    small, small_wire = frame_of([b"after"], b"")
    with trio.fail_after(30):
        server, client = await tcp_pair(certs if tls else None)
        async with server, client, trio.open_nursery() as n:
            conn = ServerConnection(server, peer=("test", 0))
            n.start_soon(conn.send_parts, big)
            await trio.testing.wait_all_tasks_blocked()  # the socket is full, the rest waits
            n.start_soon(conn.send_parts, small)
            await trio.testing.wait_all_tasks_blocked()
            got = await receive_exactly(client, len(big_wire) + len(small_wire))
        assert got == big_wire + small_wire
        assert conn.statistics().frames_sent == 2
