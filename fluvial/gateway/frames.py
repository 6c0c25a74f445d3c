"""The gateway's WebSocket frames (pure): parse what a client sends, build what it is answered.

Client -> server (JSON text, iii's protocol)::

    {"type": "join",  "data": {"subscriptionId": S, "streamName": N, "groupId": G, "id": I?,
                               "since": T?}}
    {"type": "leave", "data": {... the same ...}}

``id`` absent or null joins the whole group. ``since`` (fluvial's extension) is the timestamp of
the last frame the client applied: the gateway then sends the changes after it instead of a
sync snapshot, when it still has them.

Anything else (bad JSON, an unknown type, missing fields) is a ``FrameError`` that the gateway
answers with an ``error`` frame and otherwise ignores.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from fluvial.gateway.model import StreamError, check_name

#: Default limits (``GatewayLimits``).
MAX_FRAME_BYTES = 64 * 1024


class FrameError(ValueError):
    """A client frame the gateway cannot act on; ``code`` names the reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Subscription:
    """One join: ``id`` None for the whole group; ``since`` a timestamp to resume after."""

    subscription_id: str
    stream: str
    group: str
    id: str | None = None
    since: int | None = None

    @property
    def target(self) -> tuple[str, str, str | None]:
        return self.stream, self.group, self.id

    def hook_args(self, context: Any) -> dict:
        return {"subscription_id": self.subscription_id, "stream_name": self.stream,
                "group_id": self.group, "id": self.id, "context": context}


@dataclass(frozen=True)
class Join:
    sub: Subscription


@dataclass(frozen=True)
class Leave:
    sub: Subscription


def parse_client_frame(text: str | bytes, max_bytes: int = MAX_FRAME_BYTES) -> Join | Leave:
    """A client frame as ``Join`` or ``Leave``; ``FrameError`` for anything else."""
    if len(text) > max_bytes:
        raise FrameError("too_large", f"frame larger than {max_bytes} bytes")
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise FrameError("bad_json", f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise FrameError("bad_frame", "a frame is a JSON object")
    kind = msg.get("type")
    if kind not in ("join", "leave"):
        raise FrameError("unknown_type", f"unknown frame type {kind!r}")
    data = msg.get("data")
    if not isinstance(data, dict):
        raise FrameError("bad_frame", f"{kind}: data is an object")
    try:
        sub_id = data.get("subscriptionId")
        if not isinstance(sub_id, str) or not sub_id or len(sub_id) > 256:
            raise StreamError("subscriptionId must be a non-empty string")
        stream = check_name("streamName", data.get("streamName"))
        group = check_name("groupId", data.get("groupId"))
        item_id = data.get("id")
        if item_id is not None:
            item_id = check_name("id", item_id)
    except StreamError as e:
        raise FrameError("bad_frame", f"{kind}: {e}") from None
    since = data.get("since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise FrameError("bad_frame", f"{kind}: since must be a timestamp (non-negative integer)")
    sub = Subscription(sub_id, stream, group, item_id, since)
    return Join(sub) if kind == "join" else Leave(sub)


def encode(frame: dict) -> str:
    return json.dumps(frame, separators=(",", ":"))


def error_frame(code: str, message: str) -> dict:
    """The answer to a frame the gateway cannot act on (iii clients ignore unknown types)."""
    return {"type": "error", "error": {"code": code, "message": message}}


def unauthorized_frame(sub: Subscription, timestamp: int) -> dict:
    """A refused join; the socket stays open."""
    return {"type": "stream", "timestamp": timestamp, "streamName": sub.stream,
            "groupId": sub.group, "id": sub.id, "event": {"type": "unauthorized"}}


def ws_text_frame(text: str) -> bytes:
    """A whole unfragmented, unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it
    on a connection without extensions (the gateway negotiates none). The bytes are the same for
    every socket, so a change is framed once and the bytes go to all its subscribers.

        byte 0      FIN (0x80) | opcode text (0x1)
        byte 1      payload length: < 126 as is; 126 + 16-bit length; 127 + 64-bit length
        payload     the UTF-8 text (a server does not mask)
    """
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload
