"""Content types: what a topic's record values are, and the check a producer makes against it.

A topic may declare a content type (``fluvial topic create T --content-type application/json``;
fluvial's extension, kept by the SC next to the topic and never seen by the official client).
fluvial's producer checks each value against the type that applies to it before queueing it: the
record's own ``content-type`` header when it has one, else the topic's. A value that does not fit
is refused with a ``ContentTypeError`` naming the record; nothing of it is written.

Checked types: ``application/json`` (the value parses as JSON, UTF-8), ``text/*`` (UTF-8 text).
Any other type (``application/octet-stream``, ``application/x-protobuf``...) is accepted as it
comes: fluvial stores bytes and cannot check what it does not know. Parameters after ``;``
(``text/plain; charset=utf-8``) are kept but do not change the check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

CONTENT_TYPE_HEADER = "content-type"
KNOWN = ("application/json", "text/plain", "application/octet-stream")


class ContentTypeError(ValueError):
    """A value does not fit its content type (the message names the record and why)."""


def validate_content_type(content_type: str) -> str:
    """``content_type`` normalised (lowercase, stripped); "" means none. Raises ValueError for a
    string that is not ``type/subtype``."""
    ct = content_type.strip().lower()
    if not ct:
        return ""
    base = ct.split(";", 1)[0].strip()
    kind, slash, sub = base.partition("/")
    if not slash or not kind or not sub or any(c.isspace() for c in base):
        raise ValueError(f"content type {content_type!r} is not of the form type/subtype "
                         f"(e.g. {', '.join(KNOWN)})")
    return ct


def header_content_type(headers: Iterable[tuple[str, bytes]]) -> str | None:
    """The record's own ``content-type`` header (the last one), or None."""
    found = None
    for k, v in headers:
        if k.lower() == CONTENT_TYPE_HEADER:
            found = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return found


def value_error(content_type: str, value: bytes) -> str | None:
    """Why ``value`` does not fit ``content_type`` (None: it fits, or the type is not checked)."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base == "application/json" or base.endswith("+json"):
        try:
            json.loads(value)
        except (ValueError, UnicodeDecodeError) as e:
            return f"not valid JSON ({e})"
    elif base.startswith("text/"):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as e:
            return f"not UTF-8 text ({e})"
    return None


def check_value(topic_type: str, value: bytes, headers: Iterable[tuple[str, bytes]] = (),
                what: str = "record") -> None:
    """Raise ``ContentTypeError`` when ``value`` does not fit the type that applies to it: its
    ``content-type`` header, else ``topic_type`` ("" = unchecked). ``what`` names the record."""
    ct = header_content_type(headers) if headers else None
    if ct is None:
        ct = topic_type
    if not ct:
        return
    why = value_error(ct, value)
    if why is not None:
        shown = value[:40] + (b"..." if len(value) > 40 else b"")
        raise ContentTypeError(f"{what} {shown!r} does not fit content type {ct}: {why}")


__all__ = ["CONTENT_TYPE_HEADER", "KNOWN", "ContentTypeError", "check_value", "header_content_type",
           "validate_content_type", "value_error"]
