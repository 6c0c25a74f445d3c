"""The gateway as a user runs it: `fluvial cluster start --gateway`, `fluvial stream ...`, and
kill -9 of the gateway and of the SPU leader (with a power cut): nothing acknowledged is lost and
the state is rebuilt from the log."""

from __future__ import annotations

import json

import pytest
import trio

from harness.processes import ProcessCluster

from .conftest import server_closes, ws_client
from .test_protocol import http

pytestmark = pytest.mark.slow


@pytest.fixture
def pc(tmp_path):
    with ProcessCluster(tmp_path / "home", spus=1, tls=False, power_loss=True) as c:
        c.cli("cluster", "start", "--spus", "1", "--sc-port", "0", "--spu-port", "0", "--no-tls",
              "--heartbeat-timeout", "2", "--gateway", "--gateway-port", "0")
        yield c


def gateway_port(pc: ProcessCluster) -> int:
    return pc.member("gateway")["public_port"]


def test_stream_cli(pc):
    out = pc.cli("stream", "set", "chat", "room-1", "m1", '{"text": "hi"}').stdout
    assert json.loads(out) == {"text": "hi", "id": "m1"}
    pc.cli("stream", "set", "chat", "room-1", "m2", "[1, 2]")
    assert json.loads(pc.cli("stream", "get", "chat", "room-1", "m1").stdout) == {"text": "hi", "id": "m1"}
    assert json.loads(pc.cli("stream", "list", "chat", "room-1").stdout) == [
        {"text": "hi", "id": "m1"}, [1, 2]]
    pc.cli("stream", "send", "chat", "room-1", "typing", '{"user": "ann"}', "--id", "m1")
    pc.cli("stream", "delete", "chat", "room-1", "m1")
    missing = pc.cli("stream", "get", "chat", "room-1", "m1", check=False)
    assert missing.returncode == 1 and "no item" in missing.stderr
    assert json.loads(pc.cli("stream", "list", "chat", "other").stdout) == []
    bad = pc.cli("stream", "set", "chat", "g", "i", "{nope", check=False)
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    assert pc.cli("stream", "get", "nosuchstream", "g", "i", check=False).returncode == 1
    # the gateway serves what the CLI wrote
    status, items = trio.run(http, gateway_port(pc), "GET", "/streams/chat/room-1")
    assert (status, items) == (200, [[1, 2]])


@server_closes[0]
@server_closes[1]
def test_kill_gateway_and_spu_leader_loses_nothing_acknowledged(pc):
    acked: dict[str, int] = {}

    async def write_then_kill():
        port = gateway_port(pc)
        async with ws_client(port) as c:
            await c.join("orders", "g")
            assert (await c.recv())["event"]["data"] == []
            for i in range(40):
                item = f"o{i % 7}"
                status, _ = await http(port, "PUT", f"/streams/orders/g/{item}",
                                       json.dumps({"v": i}).encode())
                assert status == 200
                acked[item] = i
            # while the SPU leader is stopped, nothing can be durable: no acknowledgement
            pc.pause("spu-5001")
            with trio.move_on_after(1.5) as waited:
                await http(port, "PUT", "/streams/orders/g/late", b'{"v": -1}')
            assert waited.cancelled_caught, "a write was acknowledged while the log was stopped"
            # kill -9 the gateway, then the SPU leader with a power cut (what it had not
            # fsynced is gone)
            pc.kill("gateway", power_loss=False)
            pc.kill("spu-5001")

    trio.run(write_then_kill)
    pc.resume()  # the SPU and the gateway come back; the gateway rebuilds from the log

    async def check():
        async with ws_client(gateway_port(pc)) as c:
            await c.join("orders", "g")
            sync = await c.recv(timeout=60)
            assert {d["id"]: d["v"] for d in sync["event"]["data"]} == acked
            await c.join("orders", "g", "o1", sub="s2")
            assert (await c.recv())["event"]["data"] == {"v": acked["o1"], "id": "o1"}

    trio.run(check)
