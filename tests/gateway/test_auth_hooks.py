"""--auth-function, --on-join, --on-leave: the matrix of accept, refuse, raise and hang."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import HandshakeError, open_websocket_url

from . import hookfns
from .conftest import Client, open_gateway, server_closes, stream_name, ws_client
from .test_protocol import http

pytestmark = server_closes  # refused handshakes


@pytest.fixture(autouse=True)
def _calls():
    hookfns.CALLS.clear()
    yield
    hookfns.CALLS.clear()


async def connect_status(port: int, token: str) -> int | Client:
    try:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/?authToken={token}") as ws:
            c = Client(ws)
            await c.join(stream_name(), "g")
            msg = await c.recv()
            assert msg["event"]["type"] == "sync"
            return 101
    except HandshakeError as e:
        return e.status_code


@pytest.mark.parametrize("token,status", [("good", 101), ("bad", 401), ("raise", 401), ("hang", 401)])
async def test_auth_function_accepts_or_refuses_the_socket(fl, token, status):
    async with open_gateway(fl, auth_function=hookfns.auth, hook_timeout=0.5) as gw:
        assert await connect_status(gw.port, token) == status
        req = [c for kind, c in hookfns.CALLS if kind == "auth"][0]
        assert req["path"] == "/" and req["query_params"]["authToken"] == token
        assert req["addr"].startswith("127.0.0.1:") and "host" in req["headers"]
        # the gateway still serves after any of them
        assert await connect_status(gw.port, "good") == 101


async def test_auth_applies_to_http_and_async_functions_work(fl):
    s = stream_name()
    async with open_gateway(fl, auth_function=hookfns.auth) as gw:
        st, _ = await http(gw.port, "GET", f"/streams/{s}/g?authToken=bad")
        assert st == 401
        st, _ = await http(gw.port, "GET", f"/streams/{s}/g?authToken=good")
        assert st == 200
    async with open_gateway(fl, auth_function=hookfns.auth_async) as gw:
        assert await connect_status(gw.port, "anyone") == 101


async def test_join_and_leave_hooks(fl):
    s = stream_name()
    async with open_gateway(fl, on_join=hookfns.on_join, on_leave=hookfns.on_leave,
                            auth_function=hookfns.auth, hook_timeout=0.5) as gw:
        async with open_websocket_url(f"ws://127.0.0.1:{gw.port}/?authToken=good") as ws:
            c = Client(ws)
            for group, expected in [("secret", "unauthorized"), ("boom", "unauthorized"),
                                    ("slow", "unauthorized"), ("open", "sync")]:
                await c.join(s, group, sub=group)
                msg = await c.recv()
                assert msg["event"]["type"] == expected, group
                assert msg["groupId"] == group
            # a refused subscription gets nothing; the allowed one does
            await fl.streams().set(s, "secret", "x", 1)
            await fl.streams().set(s, "open", "x", 1)
            msg = await c.recv()
            assert (msg["groupId"], msg["event"]["type"]) == ("open", "create")
            await c.leave(s, "open", sub="open")
            with trio.fail_after(10):
                while not any(kind == "leave" for kind, _ in hookfns.CALLS):
                    await trio.sleep(0.01)
        joins = [c for kind, c in hookfns.CALLS if kind == "join"]
        assert joins[0] == {"subscription_id": "secret", "stream_name": s, "group_id": "secret",
                            "id": None, "context": {"user": "ann"}}
        leaves = [c for kind, c in hookfns.CALLS if kind == "leave"]
        assert [x["group_id"] for x in leaves] == ["open"]


async def test_leave_hook_runs_when_the_socket_closes_and_may_raise(fl):
    s = stream_name()
    async with open_gateway(fl, on_leave=hookfns.on_leave, hook_timeout=0.5) as gw:
        async with ws_client(gw.port) as c:
            await c.join(s, "boom", sub="a")
            await c.join(s, "g", "i", sub="b")
            await c.recv_n(2)
        with trio.fail_after(10):
            while len([k for k, _ in hookfns.CALLS if k == "leave"]) < 2:
                await trio.sleep(0.01)
        async with ws_client(gw.port) as c:  # still serving
            await c.join(s, "g")
            assert (await c.recv())["event"]["type"] == "sync"
