"""A topic's content type: set through the admin API, kept by the SC across restarts of its
record, and enforced by fluvial's producer (nothing of a refused record is written)."""

from __future__ import annotations

import pytest
import trio

from fluvial import Offset
from fluvial.errors import FluvialError
from fluvial.protocol.content_type import ContentTypeError

from .conftest import TEST_TIMEOUT


async def _values(fl, topic):
    async with fl.consumer(topic, partition=0, offset=Offset.beginning(), continuous=False) as c:
        return [r.value async for r in c]


async def test_json_topic_refuses_invalid_json_and_writes_nothing(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(content_type="application/json")
        assert await fl.admin.content_type(topic) == "application/json"
        async with fl.producer(topic, linger=0) as p:
            await (await p.send(b'{"n": 1}'))
            with pytest.raises(ContentTypeError, match=r"record b'\{oops' does not fit content type application/json"):
                await p.send(b"{oops")
            with pytest.raises(ContentTypeError, match="record 1 "):
                await p.send_many([b"[1]", b"nope", b"2"])
            # a record's own content-type header overrides the topic's
            await (await p.send(b"free text", headers={"content-type": "text/plain"}))
            await (await p.send(b"[2]"))
        assert await _values(fl, topic) == [b'{"n": 1}', b"free text", b"[2]"]


async def test_content_type_can_be_changed_and_removed(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        assert await fl.admin.content_type(topic) == ""
        await fl.admin.set_content_type(topic, "Text/Plain")
        assert await fl.admin.content_type(topic) == "text/plain"
        async with fl.producer(topic) as p:
            with pytest.raises(ContentTypeError, match="not UTF-8"):
                await p.send(b"\xff")
        await fl.admin.set_content_type(topic, "")
        async with fl.producer(topic) as p:
            await (await p.send(b"\xff"))
        with pytest.raises(ValueError, match="type/subtype"):
            await fl.admin.set_content_type(topic, "json")
        with pytest.raises(FluvialError):
            await fl.admin.content_type("no-such-topic")
