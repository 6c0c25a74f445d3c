"""The partition proxy: forwards both ways, cut closes carried links and refuses new ones, heal
lets new ones through, an unset target refuses."""

from __future__ import annotations

import contextlib
from functools import partial

import trio

from harness.proxy import TcpProxy, open_proxy


@contextlib.asynccontextmanager
async def _echo_server():
    """A TCP echo server on 127.0.0.1; yields its port."""
    async def echo(stream):
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while data := await stream.receive_some(4096):
                    await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def _roundtrip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        got += chunk
    return got


async def _closed_by_peer(stream: trio.SocketStream) -> bool:
    """True when the peer ended the connection (EOF or reset) before sending anything."""
    try:
        return await stream.receive_some(1) == b""
    except trio.BrokenResourceError:
        return True


async def _wait_links(proxy: TcpProxy, count: int) -> None:
    while proxy.open_links != count:
        await trio.sleep(0.005)


async def test_forwards_both_ways():
    with trio.fail_after(10):
        async with _echo_server() as port, open_proxy(("127.0.0.1", port)) as proxy:
            async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
                assert await _roundtrip(s, b"hello" * 1000) == b"hello" * 1000
            assert proxy.forwarded == 1


async def test_cut_closes_carried_connections_and_refuses_new_ones_until_healed():
    with trio.fail_after(10):
        async with _echo_server() as port, open_proxy(("127.0.0.1", port)) as proxy:
            carried = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            async with carried:
                assert await _roundtrip(carried, b"x") == b"x"
                proxy.cut()
                assert proxy.is_cut
                assert await _closed_by_peer(carried)
            await _wait_links(proxy, 0)

            async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as refused:
                assert await _closed_by_peer(refused)
            assert proxy.forwarded == 1

            proxy.heal()
            async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as again:
                assert await _roundtrip(again, b"back") == b"back"
            assert proxy.forwarded == 2


async def test_no_target_refuses_until_one_is_set():
    with trio.fail_after(10):
        async with _echo_server() as port, open_proxy() as proxy:
            async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
                assert await _closed_by_peer(s)
            proxy.target = ("127.0.0.1", port)
            async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
                assert await _roundtrip(s, b"ok") == b"ok"
