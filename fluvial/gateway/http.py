"""The gateway's HTTP side (pure): parse a request head, route it, build a response.

One port serves the WebSocket (``GET /`` with ``Upgrade: websocket``), the live page (``/ui``)
and the stream operations:

    GET    /streams/{stream}/{group}           the group's items (iii's getGroup), a JSON array
    GET    /streams/{stream}/{group}/{id}      the item, or 404
    PUT    /streams/{stream}/{group}/{id}      set (create or update); body: the item as JSON
    DELETE /streams/{stream}/{group}/{id}      delete
    POST   /send/{stream}/{group}              a custom event; body {"type": T, "data": D, "id": I?}
    GET    /healthz                            200 once the gateway is connected

Writes answer 200 only once the record is durable on the log. Path segments are URL-decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

#: The most bytes of a request head (request line and headers).
MAX_HEAD_BYTES = 16 * 1024

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)  # lowercase names

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    @property
    def is_websocket(self) -> bool:
        return (self.method == "GET" and self.headers.get("upgrade", "").lower() == "websocket")

    @property
    def content_length(self) -> int:
        try:
            n = int(self.headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if n < 0:
            raise HttpError(400, "bad Content-Length")
        return n


def split_head(buffer: bytes, max_bytes: int = MAX_HEAD_BYTES) -> tuple[bytes, bytes] | None:
    """(head, rest) once ``buffer`` holds a whole request head, None while it does not.

    Raises:
        HttpError: 431 when the head is longer than ``max_bytes``.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > max_bytes:
            raise HttpError(431, "request head too large")
        return None
    if end + 4 > max_bytes:
        raise HttpError(431, "request head too large")
    return buffer[:end + 4], buffer[end + 4:]


def parse_head(head: bytes) -> RequestHead:
    """The request line and headers; ``HttpError(400)`` if they are not HTTP/1.x."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HttpError(400, "bad request line") from None
    if not version.startswith("HTTP/1.") or not target.startswith("/"):
        raise HttpError(400, "bad request line")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise HttpError(400, "bad header line")
        headers[name.strip().lower()] = value.strip()
    return RequestHead(method, target, headers)


def response(status: int, body: bytes = b"", content_type: str = "application/json",
             extra: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(status: int, value) -> bytes:
    return response(status, json.dumps(value, separators=(",", ":")).encode())


def error_response(status: int, message: str) -> bytes:
    return json_response(status, {"error": message})


@dataclass(frozen=True)
class Op:
    """A routed stream operation: ``kind`` in get, list, set, delete, send, ui, health."""

    kind: str
    stream: str | None = None
    group: str | None = None
    id: str | None = None


def route(method: str, path: str) -> Op:
    """The operation of a request; ``HttpError`` 404/405 for none."""
    if path == "/ui":
        return _only(method, "GET", Op("ui"))
    if path == "/healthz":
        return _only(method, "GET", Op("health"))
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) in (3, 4) and parts[0] == "streams" and all(parts[1:]):
        if len(parts) == 3:
            return _only(method, "GET", Op("list", parts[1], parts[2]))
        kinds = {"GET": "get", "PUT": "set", "POST": "set", "DELETE": "delete"}
        if method not in kinds:
            raise HttpError(405, f"{method} not allowed on an item")
        return Op(kinds[method], parts[1], parts[2], parts[3])
    if len(parts) == 3 and parts[0] == "send" and all(parts[1:]):
        return _only(method, "POST", Op("send", parts[1], parts[2]))
    raise HttpError(404, f"no such resource: {path}")


def _only(method: str, allowed: str, op: Op) -> Op:
    if method != allowed:
        raise HttpError(405, f"{method} not allowed here (only {allowed})")
    return op


def parse_json_body(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise HttpError(400, f"the body is not JSON: {e}") from None
