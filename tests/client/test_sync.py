"""``fluvial.sync``: the blocking facade, driven from a worker thread of the test's trio run
(the cluster lives in the test's own loop; the facade runs its own loop in a thread of its own)."""

from __future__ import annotations

import threading

import pytest
import trio

import fluvial
import fluvial.sync
from fluvial import Offset

from .conftest import TEST_TIMEOUT


def blocking_session(endpoint: str) -> dict:
    out = {}
    with fluvial.sync.connect(endpoint=endpoint) as fl:
        fl.admin.create_topic("sync-topic", partitions=2)
        out["topics"] = [t.name for t in fl.admin.list_topics()]
        with fl.producer("sync-topic") as p:
            first = p.send(b"one", key=b"k")
            many = p.send_many([b"two", (b"k", b"three")])
            p.flush()
            out["metas"] = [first.wait()] + [o.wait() for o in many]
        with fl.consumer("sync-topic", continuous=False) as c:
            out["records"] = sorted((r.partition, r.offset, r.key, r.value) for r in c)
        with fl.consumer("sync-topic", consumer_id="s", commit="manual", partition=0,
                         offset=Offset.beginning()) as c:
            r = next(c)
            c.commit()
            c.flush()
            out["committed"] = (r.partition, r.offset)
        out["offsets"] = [(o.consumer_id, o.offset) for o in fl.admin.list_consumer_offsets()]
        with pytest.raises(fluvial.errors.TopicAlreadyExistsError):
            fl.admin.create_topic("sync-topic")
        fl.admin.delete_topic("sync-topic")
        out["after_delete"] = fl.admin.list_topics()
    out["threads"] = [t.name for t in threading.enumerate() if t.name == "fluvial-sync"]
    return out


async def test_the_blocking_facade_does_what_the_async_client_does(cluster):
    with trio.fail_after(TEST_TIMEOUT):
        out = await trio.to_thread.run_sync(blocking_session, cluster.endpoint)
    assert out["topics"] == ["sync-topic"]
    assert [m.offset for m in out["metas"] if m.partition == out["metas"][0].partition][:2] == [0, 1]
    assert len(out["records"]) == 3
    assert {v for *_, v in out["records"]} == {b"one", b"two", b"three"}
    assert out["committed"][0] == 0 and out["offsets"] == [("s", out["committed"][1])]
    assert out["after_delete"] == []
    assert out["threads"] == []  # closing stopped the loop thread


def connect_to_nothing(port: int) -> BaseException | None:
    try:
        fluvial.sync.connect(endpoint=f"127.0.0.1:{port}")
    except BaseException as e:  # noqa: BLE001
        return e
    return None


async def test_blocking_connect_errors_are_raised_and_leave_no_thread():
    with trio.fail_after(TEST_TIMEOUT):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()
        err = await trio.to_thread.run_sync(connect_to_nothing, port)
    assert isinstance(err, fluvial.ConnectionLost)
    assert not [t for t in threading.enumerate() if t.name == "fluvial-sync"]


def use_after_close(endpoint: str) -> BaseException | None:
    fl = fluvial.sync.connect(endpoint=endpoint)
    fl.close()
    fl.close()  # twice is fine
    try:
        fl.admin.list_topics()
    except fluvial.FluvialError as e:
        return e
    return None


async def test_a_closed_blocking_connection_refuses_calls(cluster):
    with trio.fail_after(TEST_TIMEOUT):
        err = await trio.to_thread.run_sync(use_after_close, cluster.endpoint)
    assert err is not None and "closed" in str(err)
