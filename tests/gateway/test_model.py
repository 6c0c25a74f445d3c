"""The pure half of the gateway: records <-> state and events, client frames, the registry, HTTP."""

from __future__ import annotations

import json

import pytest

from fluvial.gateway import http
from fluvial.gateway.frames import (
    FrameError, Join, Leave, Subscription, parse_client_frame, ws_text_frame,
)
from fluvial.gateway.model import (
    GroupPartitioner, PartitionState, StreamError, decode_record, encode_delete, encode_event,
    encode_set, partition_for_group, topic_for_stream,
)
from fluvial.gateway.registry import Registry, TooManySubscriptions


def fold(ops, ts=None):
    """Apply (key, value) pairs at offsets 0.. with record timestamps ``ts`` (default 1000)."""
    state = PartitionState(history_size=3)
    events = []
    for i, (k, v) in enumerate(ops):
        events.append(state.apply(i, k, v, 1000 if ts is None else ts[i]))
    return state, events


def test_set_update_delete_event_make_the_iii_events():
    state, events = fold([encode_set("g", "a", {"n": 1}), encode_set("g", "a", {"n": 2}),
                          encode_event("g", None, "hi", [1]), encode_delete("g", "a"),
                          encode_delete("g", "a")])
    assert [e.event["type"] if e else None for e in events] == ["create", "update", "event", "delete", None]
    assert events[1].event["data"] == {"n": 2, "id": "a"}
    assert events[3].event == {"type": "delete", "data": {"n": 2, "id": "a"}}
    assert events[2].event == {"type": "event", "event": {"type": "hi", "data": [1]}}
    assert state.get("g", "a") is None and state.list("g") == [] and state.next_offset == 5


def test_timestamps_strictly_increase_even_when_records_do_not():
    _, events = fold([encode_set("g", "a", 1), encode_set("g", "a", 2), encode_set("g", "b", 3),
                      encode_set("g", "a", 4)], ts=[5000, 5000, 4000, 9000])
    stamps = [e.timestamp for e in events]
    assert stamps == [5000, 5001, 5002, 9000]


def test_history_resume_and_its_limit():
    state, events = fold([encode_set("g", "a", 1), encode_set("g", "b", 2), encode_set("h", "c", 3),
                          encode_set("g", "a", 4)], ts=[10, 20, 30, 40])
    assert [e.offset for e in state.since(20, "g", None)] == [3]
    assert [e.offset for e in state.since(25, "g", "a")] == [3]
    assert state.since(40, "g", None) == []
    assert state.since(5, "g", None) is None  # the first event fell out of the history (3)


def test_list_orders_by_last_change_and_ids_are_added_to_objects():
    state, _ = fold([encode_set("g", "a", {"x": 1}), encode_set("g", "b", "plain"),
                     encode_set("g", "a", {"x": 2})], ts=[1, 2, 3])
    assert state.list("g") == ["plain", {"x": 2, "id": "a"}]


@pytest.mark.parametrize("key,value", [(None, b"{}"), (b"nope", b"{}"), (b'["g","a"]', b"{bad"),
                                       (b'["g"]', b'{"no":"type"}'), (b"[1,2]", b"1"),
                                       (b'["a","b","c"]', b"1")])
def test_foreign_records_are_skipped(key, value):
    with pytest.raises(StreamError):
        decode_record(key, value)
    state = PartitionState()
    assert state.apply(7, key, value, 1) is None and state.next_offset == 8


def test_topic_names_and_partitions():
    assert topic_for_stream("orders") == "orders"
    t = topic_for_stream("chatMessage")
    assert t.startswith("s-chatmessage-") and t != topic_for_stream("chatmessage!")
    assert len(topic_for_stream("X" * 200)) <= 63
    with pytest.raises(StreamError):
        topic_for_stream("")
    key, _ = encode_set("room-7", "m1", {})
    assert GroupPartitioner().partition(key, 8) == partition_for_group("room-7", 8)
    assert GroupPartitioner().partition(encode_event("room-7", None, "t", 1)[0], 8) == \
        partition_for_group("room-7", 8)


def test_parse_client_frames():
    j = parse_client_frame(json.dumps({"type": "join", "data": {
        "subscriptionId": "s", "streamName": "n", "groupId": "g", "id": None, "since": 5}}))
    assert j == Join(Subscription("s", "n", "g", None, 5))
    lv = parse_client_frame('{"type":"leave","data":{"subscriptionId":"s","streamName":"n","groupId":"g","id":"i"}}')
    assert lv == Leave(Subscription("s", "n", "g", "i"))
    for bad in ["", "{", "[]", '{"type":"join"}', '{"type":"x","data":{}}',
                '{"type":"join","data":{"subscriptionId":1,"streamName":"n","groupId":"g"}}',
                '{"type":"join","data":{"subscriptionId":"s","streamName":"n","groupId":"g","since":true}}',
                '{"type":"join","data":{"subscriptionId":"s","streamName":"n","groupId":"g","id":7}}']:
        with pytest.raises(FrameError):
            parse_client_frame(bad)
    with pytest.raises(FrameError) as e:
        parse_client_frame("x" * 100, max_bytes=10)
    assert e.value.code == "too_large"


def test_registry_targets_each_socket_once_and_forgets():
    r = Registry(max_subscriptions_per_socket=2)
    r.add(1, Subscription("a", "s", "g", "i"))
    r.add(1, Subscription("b", "s", "g"))
    r.add(2, Subscription("a", "s", "g", "j"))
    assert r.targets("s", "g", "i") == [1]
    assert sorted(r.targets("s", "g", "j")) == [1, 2]
    assert r.targets("s", "g", None) == [1]  # a group-wide event: group subscribers only
    with pytest.raises(TooManySubscriptions):
        r.add(1, Subscription("c", "s", "g", "k"))
    r.add(1, Subscription("a", "s", "g", "k"))  # same subscriptionId: replaces, not counted twice
    assert r.targets("s", "g", "i") == [1] and sorted(r.targets("s", "g", "k")) == [1]
    r.remove(1, "b")
    assert r.targets("s", "g", "i") == [] and r.targets("s", "g", "k") == [1]
    assert [s.subscription_id for s in r.drop_socket(1)] == ["a"]
    assert r.targets("s", "g", "k") == [] and r.streams() == {"s"}


def test_http_head_and_routes():
    assert http.split_head(b"GET / HTTP/1.1\r\nA: b\r\n") is None
    head, rest = http.split_head(b"GET /x?authToken=t HTTP/1.1\r\nUpgrade: WebSocket\r\n\r\nbody")
    req = http.parse_head(head)
    assert (req.path, req.query, req.is_websocket, rest) == ("/x", {"authToken": "t"}, True, b"body")
    with pytest.raises(http.HttpError):
        http.split_head(b"x" * 100, max_bytes=50)
    for bad in [b"GARBAGE\r\n\r\n", b"GET x HTTP/1.1\r\n\r\n", b"GET / SPDY\r\n\r\n",
                b"GET / HTTP/1.1\r\nno colon\r\n\r\n"]:
        with pytest.raises(http.HttpError):
            http.parse_head(bad)
    assert http.route("GET", "/streams/s/g") == http.Op("list", "s", "g")
    assert http.route("PUT", "/streams/s/g%2F1/i%20d") == http.Op("set", "s", "g/1", "i d")
    assert http.route("POST", "/send/s/g") == http.Op("send", "s", "g")
    for method, path, status in [("GET", "/streams/s", 404), ("PATCH", "/streams/s/g/i", 405),
                                 ("POST", "/ui", 405), ("GET", "/streams//g", 404)]:
        with pytest.raises(http.HttpError) as e:
            http.route(method, path)
        assert e.value.status == status


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_ws_text_frame_is_what_wsproto_sends_and_reads(n):
    import wsproto
    from wsproto.events import AcceptConnection, Message, Request, TextMessage

    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server.receive_data(client.send(Request(host="h", target="/")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    next(client.events())
    text = "é" * (n // 2) + "x" * (n % 2)
    assert ws_text_frame(text) == server.send(Message(data=text))
    client.receive_data(ws_text_frame(text))
    events = list(client.events())
    assert isinstance(events[0], TextMessage) and "".join(e.data for e in events) == text
