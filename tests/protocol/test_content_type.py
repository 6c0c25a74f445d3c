"""Content types: the pure check a producer makes (fluvial.protocol.content_type)."""

from __future__ import annotations

import pytest

from fluvial.protocol.content_type import (
    ContentTypeError, check_value, header_content_type, validate_content_type,
)


@pytest.mark.parametrize("ct, value, ok", [
    ("application/json", b'{"a": 1}', True),
    ("application/json", b"42", True),
    ("application/json", b"{not json", False),
    ("application/json", b"\xff", False),
    ("application/cloudevents+json", b"[1,", False),
    ("text/plain", "héllo".encode(), True),
    ("text/plain; charset=utf-8", b"\xff\xfe", False),
    ("application/octet-stream", b"\xff{", True),
    ("", b"{not json", True),
])
def test_values_are_checked_against_their_type(ct, value, ok):
    if ok:
        check_value(ct, value)
    else:
        with pytest.raises(ContentTypeError, match="record 3 .* does not fit content type"):
            check_value(ct, value, what="record 3")


def test_a_record_header_overrides_the_topic_type():
    check_value("application/json", b"plain words", [("Content-Type", b"text/plain")])
    with pytest.raises(ContentTypeError, match="application/json"):
        check_value("text/plain", b"{", [("content-type", b"application/json")])
    assert header_content_type([("x", b"1")]) is None


@pytest.mark.parametrize("given, want", [("Application/JSON", "application/json"), ("  ", ""),
                                         ("text/plain; charset=utf-8", "text/plain; charset=utf-8")])
def test_content_types_are_normalised(given, want):
    assert validate_content_type(given) == want


@pytest.mark.parametrize("bad", ["json", "application/", "/json", "a b/c"])
def test_malformed_content_types_are_refused(bad):
    with pytest.raises(ValueError, match="type/subtype"):
        validate_content_type(bad)


def test_the_sc_record_keeps_the_content_type():
    from fluvial.metadata.replication import BadRecord, TopicReplication
    r = TopicReplication(7, content_type="application/json")
    assert TopicReplication.from_json(r.to_json()) == r
    assert TopicReplication.from_json({"topic_id": 7}).content_type == ""
    with pytest.raises(BadRecord, match="content_type"):
        TopicReplication.from_json({"topic_id": 7, "content_type": 3})
