"""Fixtures for the gateway tests: the in-process cluster and client of the client tests
(``tests/client/conftest.py``), and gateways started in the test's own trio run on 127.0.0.1
port 0. Everything started is stopped on exit."""

from __future__ import annotations

import itertools
import json
from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import open_websocket_url

from fluvial.gateway.server import GatewayConfig, serve_gateway
from client.conftest import cluster, fl  # noqa: F401  (fixtures, shared with the client tests)

_names = itertools.count()


#: trio-websocket leaves its client socket to the garbage collector when the *server* closes
#: the connection; tests in which the gateway closes a socket on purpose ignore that warning.
server_closes = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
                 pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def stream_name(prefix: str = "s") -> str:
    return f"{prefix}-{next(_names)}"


@asynccontextmanager
async def open_gateway(fl, **config):
    """A gateway on ``fl``; yields the ``Gateway`` (``.port``, ``.stats``)."""
    async with trio.open_nursery() as nursery:
        gateway = await nursery.start(serve_gateway, fl, GatewayConfig(port=0, **config))
        try:
            yield gateway
        finally:
            nursery.cancel_scope.cancel()


@pytest.fixture
async def gateway(fl):
    async with open_gateway(fl) as g:
        yield g


class Client:
    """A raw WebSocket client speaking the protocol as JSON."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, msg) -> None:
        await self.ws.send_message(msg if isinstance(msg, str) else json.dumps(msg))

    async def join(self, stream, group, item_id=None, sub="s1", **extra) -> None:
        data = {"subscriptionId": sub, "streamName": stream, "groupId": group, **extra}
        if item_id is not None:
            data["id"] = item_id
        await self.send({"type": "join", "data": data})

    async def leave(self, stream, group, item_id=None, sub="s1") -> None:
        data = {"subscriptionId": sub, "streamName": stream, "groupId": group, "id": item_id}
        await self.send({"type": "leave", "data": data})

    async def recv(self, timeout: float = 10) -> dict:
        with trio.fail_after(timeout):
            return json.loads(await self.ws.get_message())

    async def recv_n(self, n: int, timeout: float = 10) -> list[dict]:
        return [await self.recv(timeout) for _ in range(n)]


@asynccontextmanager
async def ws_client(port: int, path: str = "/"):
    async with open_websocket_url(f"ws://127.0.0.1:{port}{path}") as ws:
        yield Client(ws)
