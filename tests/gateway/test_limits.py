"""Limits (connections, subscriptions per socket) and TLS (wss:// with the cluster's certificates)."""

from __future__ import annotations

import trio
from trio_websocket import open_websocket_url

from fluvial.net.tls import client_ssl_context, server_ssl_context
from fluvial.tls_certs import mint_cluster_certs

from .conftest import Client, open_gateway, server_closes, stream_name, ws_client
from .test_protocol import http


@server_closes[0]
@server_closes[1]
async def test_connections_over_the_limit_get_503_and_the_rest_is_served(fl):
    async with open_gateway(fl, max_connections=2) as gw:
        async with ws_client(gw.port) as a, ws_client(gw.port) as b:
            await a.join(stream_name(), "g")
            await a.recv()
            status, body = await http(gw.port, "GET", "/healthz")
            assert status == 503 and "too many connections" in body["error"]
            await b.join(stream_name(), "g")
            assert (await b.recv())["event"]["type"] == "sync"
            assert gw.stats.refused == 1
        # the slots are given back
        with trio.fail_after(10):
            while (await http(gw.port, "GET", "/healthz"))[0] != 200:
                await trio.sleep(0.01)


async def test_subscriptions_per_socket_are_limited(fl):
    s = stream_name()
    async with open_gateway(fl, max_subscriptions=2) as gw, ws_client(gw.port) as c:
        for i in range(2):
            await c.join(s, "g", f"i{i}", sub=f"s{i}")
            assert (await c.recv())["event"]["type"] == "sync"
        await c.join(s, "g", "i9", sub="s9")
        reply = await c.recv()
        assert reply["type"] == "error" and reply["error"]["code"] == "too_many_subscriptions"
        await c.join(s, "g", "i5", sub="s0")  # the same subscriptionId replaces, within the limit
        assert (await c.recv())["event"]["type"] == "sync"


async def test_wss_with_the_cluster_certificates(fl, tmp_path):
    certs = mint_cluster_certs(tmp_path / "certs", "fluvial.local", spu_names=())
    server = server_ssl_context(certs["server_cert"], certs["server_key"])
    s = stream_name()
    async with open_gateway(fl, ssl_context=server) as gw:
        ctx = client_ssl_context(certs["ca_cert"])
        async with open_websocket_url(f"wss://localhost:{gw.port}/", ssl_context=ctx) as ws:
            c = Client(ws)
            await c.join(s, "g")
            assert (await c.recv())["event"] == {"type": "sync", "data": []}
            await fl.streams().set(s, "g", "a", 1)
            assert (await c.recv())["event"] == {"type": "create", "data": 1}
