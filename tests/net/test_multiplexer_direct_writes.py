"""The multiplexer's direct writes (a caller writes its frame itself when the writer is idle, on
plain TCP and on TLS): frames stay whole and apart under many concurrent, cancelled callers, also
when the kernel takes only part of a frame and when a frame is written in pieces (record sets
of several batches, the large ones spliced in rather than copied); and ``notify`` sends without a
waiter."""

from __future__ import annotations

import random
from functools import partial
import socket

import pytest
import trio

from fluvial.errors import ConnectionLost
from fluvial.net.multiplexer import open_multiplexer
from fluvial.net.tls import TlsStream, client_ssl_context, server_ssl_context
from fluvial.protocol.api import decode_request
from fluvial.protocol.codec import SPLICE_FROM_BYTES
from fluvial.protocol.frame import FrameDecoder

from .conftest import REGISTRY, EchoRequest, reply_frame

SMALL_BUFFER = 16384  # socket buffers, so that large frames are taken in pieces


def text_for(value: int, size: int) -> str:
    """A body that shows if it was cut or mixed with another frame's bytes."""
    return (chr(65 + value % 26) * size)[:size]


def blob_for(value: int) -> list[bytes]:
    """A record set of 0 to 3 batches around ``SPLICE_FROM_BYTES`` (spliced or copied when
    encoded), each showing whose it is and where it belongs."""
    sizes = [SPLICE_FROM_BYTES - 1, SPLICE_FROM_BYTES, 50, 40_000][value % 4:]
    return [bytes([(value + i) % 251]) * n for i, n in enumerate(sizes)]


class CheckingServer:
    """Reads request frames on a raw TCP socket, checks each one decodes whole with the body
    its value implies, and answers it. Any bad frame is kept in ``bad``."""

    def __init__(self, ssl_context=None):
        self.ssl_context = ssl_context  # TLS on the accepted connections, when given
        self.seen: list[int] = []
        self.bad: list[str] = []
        self.ended = trio.Event()

    async def serve(self, stream: trio.SocketStream) -> None:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        decoder = FrameDecoder()
        try:
            if self.ssl_context is not None:
                stream = TlsStream(stream, self.ssl_context, server_side=True)
                await stream.do_handshake()
            while True:
                try:
                    data = await stream.receive_some(SMALL_BUFFER)
                except trio.BrokenResourceError:
                    if self.ssl_context is not None and not decoder.buffered():
                        return  # the client closed without close_notify, between frames
                    raise
                if not data:
                    return
                for payload in decoder.feed(data):
                    try:
                        header, req = decode_request(payload, REGISTRY)
                    except Exception as exc:  # a cut or interleaved frame
                        self.bad.append(repr(exc))
                        return
                    if (header.api_key != EchoRequest.API_KEY or req.text != text_for(req.value, len(req.text))
                            or req.blob != b"".join(blob_for(req.value))):
                        self.bad.append(f"frame {header.correlation_id} carries a foreign body")
                        return
                    self.seen.append(req.value)
                    await stream.send_all(reply_frame(header.correlation_id, req.value))
        except Exception as exc:
            self.bad.append(repr(exc))
        finally:
            self.ended.set()
            await stream.aclose()


async def connect_small_buffers(port: int, ssl_context=None) -> trio.abc.Stream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    if ssl_context is None:
        return stream
    tls = TlsStream(stream, ssl_context, server_hostname="localhost")
    await tls.do_handshake()
    return tls


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_concurrent_cancelled_callers_never_cut_or_mix_frames(nursery, certs, tls):
    server = CheckingServer(server_ssl_context(certs.server_cert, certs.server_key) if tls else None)
    listeners = await nursery.start(partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    rng = random.Random(20)
    answered: dict[int, int] = {}
    cancelled = 0

    with trio.fail_after(60):
        stream = await connect_small_buffers(port, client_ssl_context(certs.ca) if tls else None)
        async with open_multiplexer(stream) as conn:
            async def caller(task: int) -> None:
                nonlocal cancelled
                for k in range(12):
                    value = task * 1000 + k
                    size = rng.choice([0, 10, 300, 5000, 20_000, 32_000])
                    req = EchoRequest(value, text_for(value, size), blob=blob_for(value))
                    # some callers are cancelled at once, some while queued or waiting
                    delay = rng.choice([None, None, 0, 0.0005, 0.002])
                    with trio.move_on_after(1e9 if delay is None else delay) as scope:
                        resp = await conn.call(req, 0)
                        answered[value] = resp.value
                    if scope.cancelled_caught:
                        cancelled += 1
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as callers:  # the writer is mostly busy
                for task in range(40):
                    callers.start_soon(caller, task)
            for task in range(40, 50):  # alone: the writer idle, large frames taken in pieces
                await caller(task)
            assert conn.is_open
            # one last call: everything before it was read as whole frames
            assert (await conn.call(EchoRequest(-1, "", blob=blob_for(-1)), 0)).value == -1
    assert server.bad == []
    assert all(answered[v] == v for v in answered)
    assert set(answered) <= set(server.seen)
    assert cancelled > 0 and len(answered) > 100  # both kinds of caller happened
    assert server.seen[-1] == -1


async def test_a_notification_is_sent_and_its_answer_dropped(nursery):
    server = CheckingServer()
    listeners = await nursery.start(partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with open_multiplexer(stream) as conn:
            for i in range(5):
                await conn.notify(EchoRequest(i, text_for(i, 100), blob=blob_for(i)), 0)
            # a call after them: its answer comes after theirs, which were dropped
            assert (await conn.call(EchoRequest(99, "", blob=blob_for(99)), 0)).value == 99
            stats = conn.statistics()
            assert stats.outstanding_requests == 0 and stats.frames_dropped == 5
        with pytest.raises(ConnectionLost):
            await conn.notify(EchoRequest(7), 0)
    assert server.seen == [0, 1, 2, 3, 4, 99]
