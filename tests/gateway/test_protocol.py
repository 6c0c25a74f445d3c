"""The iii streams protocol, spoken by a raw WebSocket client against a gateway on a cluster."""

from __future__ import annotations

import pytest
import trio

from fluvial.errors import FluvialError

from .conftest import open_gateway, server_closes, stream_name, ws_client


async def test_item_join_sync_then_changes_in_order(fl, gateway):
    s = stream_name()
    streams = fl.streams()
    await streams.set(s, "g", "a", {"n": 1})
    async with ws_client(gateway.port) as c:
        await c.join(s, "g", "a")
        sync = await c.recv()
        assert sync["type"] == "stream" and sync["event"] == {"type": "sync", "data": {"n": 1, "id": "a"}}
        assert (sync["streamName"], sync["groupId"], sync["id"]) == (s, "g", "a")
        await streams.set(s, "g", "a", {"n": 2})
        await streams.send(s, "g", "ping", {"x": 1}, item_id="a")
        await streams.delete(s, "g", "a")
        await streams.set(s, "g", "a", {"n": 3})
        frames = await c.recv_n(4)
        assert [f["event"]["type"] for f in frames] == ["update", "event", "delete", "create"]
        assert frames[0]["event"]["data"] == {"n": 2, "id": "a"}
        assert frames[1]["event"]["event"] == {"type": "ping", "data": {"x": 1}}
        assert frames[2]["event"]["data"] == {"n": 2, "id": "a"}  # delete carries the old item
        stamps = [sync["timestamp"]] + [f["timestamp"] for f in frames]
        assert stamps == sorted(set(stamps)), "timestamps strictly increase"


async def test_group_join_and_unknown_stream(fl, gateway):
    s = stream_name()
    streams = fl.streams()
    async with ws_client(gateway.port) as c:
        await c.join(s, "g")  # the stream's topic does not exist yet
        assert (await c.recv())["event"] == {"type": "sync", "data": []}
        await c.join(s, "g", "x", sub="s2")
        assert (await c.recv())["event"] == {"type": "sync", "data": None}
        await streams.set(s, "g", "x", {"v": 1})  # creates the topic
        await streams.set(s, "other", "y", {"v": 1})  # another group: not delivered
        await streams.send(s, "g", "hello", [1])  # group-wide event
        f1, f2 = await c.recv_n(2)
        # one frame per socket although it joined both the item and its group
        assert f1["id"] == "x" and f1["event"] == {"type": "create", "data": {"v": 1, "id": "x"}}
        assert f2["id"] is None and f2["event"] == {"type": "event", "event": {"type": "hello", "data": [1]}}
        await c.join(s, "g", sub="s3")
        sync = await c.recv()
        assert sync["id"] is None and sync["event"]["data"] == [{"v": 1, "id": "x"}]


async def test_leave_stops_delivery(fl, gateway):
    s = stream_name()
    streams = fl.streams()
    async with ws_client(gateway.port) as c:
        await c.join(s, "g", "a")
        await c.recv()
        await c.leave(s, "g", "a")
        await streams.set(s, "g", "a", {"n": 1})
        await c.join(s, "g", "b", sub="s2")  # a marker: the next frame must be its sync
        f = await c.recv()
        assert f["id"] == "b" and f["event"]["type"] == "sync"


async def test_bad_frames_are_answered_and_the_socket_survives(fl, gateway):
    s = stream_name()
    async with ws_client(gateway.port) as c:
        for bad, code in [("not json", "bad_json"), ("[1]", "bad_frame"),
                          ({"type": "dance"}, "unknown_type"), ({"type": "join"}, "bad_frame"),
                          ({"type": "join", "data": {"subscriptionId": "x", "streamName": "",
                                                     "groupId": "g"}}, "bad_frame"),
                          ({"type": "join", "data": {"subscriptionId": "x", "streamName": "s",
                                                     "groupId": "g", "since": -1}}, "bad_frame")]:
            await c.send(bad)
            reply = await c.recv()
            assert reply["type"] == "error" and reply["error"]["code"] == code, (bad, reply)
        await c.join(s, "g")
        assert (await c.recv())["event"]["type"] == "sync"


@server_closes[0]
@server_closes[1]
async def test_frame_too_large_closes_only_that_socket(fl):
    from trio_websocket import ConnectionClosed

    async with open_gateway(fl, max_frame_bytes=1000) as gw:
        async with ws_client(gw.port) as other:
            async with ws_client(gw.port) as c:
                await c.send("x" * 5000)
                try:
                    await c.recv()
                    raise AssertionError("the socket stayed open")
                except ConnectionClosed as e:
                    assert e.reason.code == 1009
            await other.join(stream_name(), "g")
            assert (await other.recv())["event"]["type"] == "sync"


async def test_resume_since_gets_the_missed_changes(fl, gateway):
    s = stream_name()
    streams = fl.streams()
    async with ws_client(gateway.port) as c:
        await c.join(s, "g")
        await c.recv()
        await streams.set(s, "g", "a", {"n": 1})
        seen = await c.recv()
    for i in range(2, 5):
        await streams.set(s, "g", "a", {"n": i})
    await streams.set(s, "g", "b", {"n": 0})
    async with ws_client(gateway.port) as c:
        await c.join(s, "g", since=seen["timestamp"])
        frames = await c.recv_n(4)
        assert [(f["id"], f["event"]["type"], f["event"]["data"]["n"]) for f in frames] == [
            ("a", "update", 2), ("a", "update", 3), ("a", "update", 4), ("b", "create", 0)]
        assert frames[0]["timestamp"] > seen["timestamp"]
        await streams.set(s, "g", "b", {"n": 9})  # and live changes after the missed ones
        assert (await c.recv())["event"]["data"]["n"] == 9


async def test_http_operations(fl, gateway):
    s = stream_name()
    async with ws_client(gateway.port) as c:
        await c.join(s, "g")
        await c.recv()
        st, body = await http(gateway.port, "PUT", f"/streams/{s}/g/a", b'{"n": 1}')
        assert st == 200 and body == {"n": 1, "id": "a"}
        assert (await c.recv())["event"]["type"] == "create"  # delivered without calling anyone
        st, body = await http(gateway.port, "GET", f"/streams/{s}/g/a")
        assert (st, body) == (200, {"n": 1, "id": "a"})
        st, body = await http(gateway.port, "GET", f"/streams/{s}/g")
        assert (st, body) == (200, [{"n": 1, "id": "a"}])
        st, _ = await http(gateway.port, "POST", f"/send/{s}/g", b'{"type": "t", "data": 5}')
        assert st == 200
        assert (await c.recv())["event"]["event"] == {"type": "t", "data": 5}
        st, _ = await http(gateway.port, "DELETE", f"/streams/{s}/g/a")
        assert st == 200 and (await c.recv())["event"]["type"] == "delete"
        st, _ = await http(gateway.port, "GET", f"/streams/{s}/g/a")
        assert st == 404
        for method, path, body, want in [("PUT", f"/streams/{s}/g/a", b"{bad", 400),
                                         ("GET", "/nope", b"", 404),
                                         ("PATCH", f"/streams/{s}/g/a", b"", 405),
                                         ("POST", f"/send/{s}/g", b'{"data": 1}', 400)]:
            st, _ = await http(gateway.port, method, path, body)
            assert st == want, (method, path)
    assert (await streams_get(fl, s)) is None


async def streams_get(fl, s):
    return await fl.streams().get(s, "g", "a")


async def http(port: int, method: str, path: str, body: bytes = b"", headers: str = ""):
    """One HTTP/1.1 request; (status, JSON body or text)."""
    import json

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                              f"{headers}\r\n".encode() + body)
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode()


async def test_resume_past_the_history_gets_a_snapshot(fl):
    s = stream_name()
    streams = fl.streams()
    async with open_gateway(fl, history_size=3) as gw:
        async with ws_client(gw.port) as c:
            await c.join(s, "g")
            await c.recv()
            await streams.set(s, "g", "a", {"n": 0})
            first = await c.recv()
            for i in range(1, 6):
                await streams.set(s, "g", f"i{i}", {"n": i})
            await c.recv_n(5)
        async with ws_client(gw.port) as c:
            await c.join(s, "g", since=first["timestamp"])
            f = await c.recv()
            # changes i1, i2 are no longer in the history: a full snapshot, not a partial replay
            assert f["event"]["type"] == "sync"
            assert sorted(d["id"] for d in f["event"]["data"]) == ["a", "i1", "i2", "i3", "i4", "i5"]


async def test_hostile_bytes_never_take_the_gateway_down(fl, gateway, caplog):
    import random

    import wsproto
    from wsproto.events import AcceptConnection, Request

    rng = random.Random(18)
    payloads = [b"\x00" * 100, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
                b"GET /streams/a/b HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                b"PUT /streams/a/b/c HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
                b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"]
    payloads += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(20)]
    async def raw(data: bytes) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", gateway.port)
        async with stream:
            await raw_on(stream, data)

    async def framed_garbage() -> None:  # a proper handshake, then garbage frames
        stream = await trio.open_tcp_stream("127.0.0.1", gateway.port)
        async with stream:
            ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host="x", target="/")))
            while not any(isinstance(e, AcceptConnection) for e in ws.events()):
                ws.receive_data(await stream.receive_some(65536))
            await raw_on(stream, bytes(rng.randrange(256) for _ in range(500)))

    async def raw_on(stream, data: bytes) -> None:
        try:
            await stream.send_all(data)
            with trio.move_on_after(2):
                while await stream.receive_some(65536):
                    pass
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        for data in payloads:
            nursery.start_soon(raw, data)
        for _ in range(10):
            nursery.start_soon(framed_garbage)
    async with ws_client(gateway.port) as c:
        await c.join(stream_name(), "g")
        assert (await c.recv())["event"]["type"] == "sync"
    assert (await http(gateway.port, "GET", "/healthz"))[0] == 200
    assert not [r for r in caplog.records if "connection failed" in r.getMessage()], \
        "an input reached a bug (an unexpected exception in a connection)"


async def test_subscribers_keep_receiving_after_the_spu_restarts(cluster, fl, gateway):
    s = stream_name()
    streams = fl.streams()
    await streams.set(s, "g", "a", {"n": 1})
    async with ws_client(gateway.port) as c:
        await c.join(s, "g")
        assert [d["n"] for d in (await c.recv())["event"]["data"]] == [1]
        await cluster.stop_spu(5001)
        await cluster.start_spu(5001)
        with trio.fail_after(30):
            while True:  # the leader is back once a write is acknowledged
                try:
                    await streams.set(s, "g", "b", {"n": 2})
                    break
                except FluvialError:  # not yet: the producer gave up; try again
                    await trio.sleep(0.1)
        f = await c.recv(timeout=30)
        assert (f["id"], f["event"]["type"]) == ("b", "create")
