"""Fan-out: several gateways deliver the same sequence; a slow subscriber is cut off alone; one
thousand subscribers each get every change."""

from __future__ import annotations

import json
import socket

import trio
import wsproto
import wsproto.frame_protocol
from wsproto.events import AcceptConnection, Request, TextMessage

import fluvial
from fluvial.gateway.model import GroupPartitioner, encode_set, topic_for_stream

from .conftest import open_gateway, server_closes, stream_name, ws_client


async def test_gateways_on_one_cluster_deliver_identical_sequences(cluster, fl):
    s = stream_name()
    streams = fl.streams(partitions=2)
    await streams.set(s, "g", "seed", {"v": 0})
    async with fluvial.connect(endpoint=cluster.endpoint) as fl2, \
            open_gateway(fl) as g1, open_gateway(fl2) as g2, \
            ws_client(g1.port) as c1, ws_client(g2.port) as c2:
        for c in (c1, c2):
            await c.join(s, "g")
        assert (await c1.recv()) == (await c2.recv())  # the same sync, timestamp included

        async def writer(w: int):
            for i in range(15):
                item = f"i{(w + i) % 4}"
                if i % 5 == 4:
                    await streams.delete(s, "g", item)
                else:
                    await streams.set(s, "g", item, {"w": w, "i": i})
                if i % 4 == 0:
                    await streams.send(s, "g", "tick", {"w": w, "i": i})

        async with trio.open_nursery() as nursery:
            for w in range(3):
                nursery.start_soon(writer, w)
        await streams.set(s, "g", "end", {})
        seqs = []
        for c in (c1, c2):
            seq = []
            while not seq or seq[-1]["id"] != "end":
                seq.append(await c.recv())
            seqs.append(seq)
        assert seqs[0] == seqs[1]
        assert len(seqs[0]) >= 3 * 15
        stamps = [f["timestamp"] for f in seqs[0]]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

    # a gateway started afterwards rebuilds the same events from the log
    async with open_gateway(fl) as g3, ws_client(g3.port) as c3:
        await c3.join(s, "g", since=0)
        replay = [await c3.recv() for _ in range(len(seqs[0]) + 1)]
        assert replay[1:] == seqs[0]


@server_closes[0]
@server_closes[1]
async def test_slow_subscriber_is_disconnected_and_the_others_get_everything(fl):
    s = stream_name()
    streams = fl.streams()
    await streams.set(s, "g", "x", 0)  # creates the topic
    async with open_gateway(fl, queue_size=1000, send_buffer_bytes=16384) as gw, ws_client(gw.port) as fast:
        await fast.join(s, "g")
        await fast.recv()
        slow = await open_raw_subscriber(gw.port, s, "g")
        big = "x" * 1000
        n = 3000
        topic = topic_for_stream(s)

        read = 0

        async def read_all():
            nonlocal read
            for i in range(n):
                f = await fast.recv()
                assert f["event"]["type"] == "create" and f["id"] == f"i{i}"
                read += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            async with fl.producer(topic, partitioner=GroupPartitioner(),
                                   batch_size=256 * 1024) as p:
                for chunk in range(0, n, 200):
                    for i in range(chunk, chunk + 200):
                        key, value = encode_set("g", f"i{i}", {"pad": big})
                        await p.send(value, key=key)
                    await p.flush()
                    # the fast subscriber keeps up (at most 200 frames behind), the slow one never reads
                    with trio.fail_after(30):
                        while read < chunk + 200:
                            await trio.sleep(0.01)
        with trio.fail_after(10):
            while gw.stats.slow_closed < 1:
                await trio.sleep(0.01)
        assert gw.stats.slow_closed == 1
        slow.close()


async def open_raw_subscriber(port: int, stream: str, group: str) -> socket.socket:
    """A subscriber that joins and then never reads (small receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    tsock = trio.socket.from_stdlib_socket(sock)
    await tsock.connect(("127.0.0.1", port))
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await tsock.send(ws.send(Request(host="127.0.0.1", target="/")))
    with trio.fail_after(10):
        while True:
            ws.receive_data(await tsock.recv(4096))
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                break
    await tsock.send(ws.send(TextMessage(
        data='{"type":"join","data":{"subscriptionId":"s","streamName":"%s","groupId":"%s"}}'
        % (stream, group))))
    return sock


async def test_one_thousand_subscribers_each_get_every_change(fl):
    s = stream_name()
    streams = fl.streams()
    n_subs, n_changes = 1000, 10
    got = [0] * n_subs
    async with open_gateway(fl) as gw:
        joined = trio.Semaphore(0)

        async def subscriber(k: int):
            async with ws_client(gw.port) as c:
                await c.join(s, "g", f"item-{k % 5}" if k % 2 else None)
                await c.recv(timeout=60)
                joined.release()
                want = n_changes if k % 2 == 0 else n_changes // 5
                last = -1
                while got[k] < want:
                    f = await c.recv(timeout=60)
                    n = f["event"]["data"]["n"]
                    assert n > last
                    last = n
                    got[k] += 1

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for k in range(n_subs):
                    nursery.start_soon(subscriber, k)
                for _ in range(n_subs):
                    await joined.acquire()
                for i in range(n_changes):
                    await streams.set(s, "g", f"item-{i % 5}", {"n": i})
    assert got == [n_changes if k % 2 == 0 else n_changes // 5 for k in range(n_subs)]
    assert gw.stats.slow_closed == 0


async def test_a_lagging_subscriber_gets_every_frame_once_in_order(fl):
    """Frames queue while a subscriber's socket is full, and changes keep coming while it drains:
    none may overtake the queue, none may be cut into another."""
    s = stream_name()
    streams = fl.streams()
    await streams.set(s, "other", "x", 0)  # creates the topic
    n = 600
    async with open_gateway(fl, queue_size=100_000, send_buffer_bytes=16384) as gw:
        sock = await open_raw_subscriber(gw.port, s, "g")
        tsock = trio.socket.from_stdlib_socket(sock)
        topic = topic_for_stream(s)
        got: list[str] = []

        async def read_all():
            parser = wsproto.frame_protocol.FrameProtocol(client=True, extensions=[])
            text = ""
            with trio.fail_after(60):
                while len(got) < n + 1:
                    parser.receive_bytes(await tsock.recv(65536))
                    for fr in parser.received_frames():
                        text += fr.payload
                        if fr.message_finished:
                            msg = json.loads(text)
                            text = ""
                            got.append(msg["id"] if msg["event"]["type"] != "sync" else "sync")

        async with fl.producer(topic, partitioner=GroupPartitioner()) as p:
            async def produce(lo, hi):
                for i in range(lo, hi):
                    key, value = encode_set("g", f"i{i}", {"pad": "x" * 1000})
                    await p.send(value, key=key)
                await p.flush()

            await produce(0, n // 2)  # the subscriber does not read: its socket fills, frames queue
            with trio.fail_after(30):
                while sum(x.pending for x in gw.sockets.values()) < 100:
                    await trio.sleep(0.01)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)  # it drains while more changes arrive
                await produce(n // 2, n)
        assert got == ["sync"] + [f"i{i}" for i in range(n)]
        sock.close()
