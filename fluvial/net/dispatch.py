"""One request dispatcher for every server API: bound, decode, gate, handle, answer.

``serve_api(registry, handlers, limits, ctx)`` turns one API into the ``handler(conn, payload)``
that ``serve_tcp`` runs for each request frame. For every frame it:

1. refuses a request larger than ``limits`` allow for its api key, before decoding it (megabytes
   of empty list entries would otherwise become millions of objects on the event loop): the
   connection is closed;
2. decodes it with the ``registry``; a header it can read naming a key or version the API does not
   serve is answered (``ApiRegistry.refuse``) and the connection kept; anything else undecodable
   closes the connection (the peer is out of sync or hostile);
3. answers ApiVersions itself, from the registry's advertisement and ``PLATFORM_VERSION``;
4. asks the ``gate`` (authorization), if the API has one, which may answer instead of the handler;
5. runs ``handlers[api_key](ctx, conn, header, request)`` and encodes what it returns.

What a handler or a gate returns (a ``Reply``):

* a response message: encoded with the request's version and correlation id;
* a ``Refusal``: the whole request fails with an ErrorCode (``encode_error_response``), and the
  connection is closed after it when ``close`` is set;
* None: nothing to send (the handler answered itself, e.g. a stream pushing on its correlation
  id, or the gate lets the request through).

A handler that raises is a bug of ours: it is logged and answered with an internal error; the
connection and the server carry on. A handler whose client went away (``ConnectionLost``) ends
quietly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fluvial.access import allowed, principal_of
from fluvial.errors import OK, ConnectionLost, Error, ErrorCode
from fluvial.net.server import Handler, ServerConnection
from fluvial.protocol import PLATFORM_VERSION
from fluvial.protocol.api import (
    API_VERSIONS_KEY, ApiVersionKey, ApiVersionsResponse, RequestHeader, UnsupportedRequest,
    decode_request, encode_error_response, encode_response, peek_api_key,
)
from fluvial.protocol.codec import DecodeError

log = logging.getLogger("fluvial.net")


@dataclass(frozen=True, slots=True)
class Refusal:
    """The answer to a request as a whole: its correlation id and ``error``, for a request no
    typed response fits (unknown key, not a member). ``close`` hangs up once it is sent."""

    error: Error
    close: bool = False


Reply = Any  # a response message, a Refusal, or None (nothing to send)
ApiHandler = Callable[[Any, ServerConnection, RequestHeader, Any], Awaitable[Reply]]
Gate = Callable[[Any, ServerConnection, RequestHeader, Any], Reply]


def refuse_unsupported(header: RequestHeader, e: UnsupportedRequest) -> Reply:
    """The usual answer to a key or version an API does not serve: an ErrorCode frame."""
    return Refusal(Error.other(str(e)))


@dataclass(frozen=True, slots=True)
class ApiRegistry:
    """What one API speaks.

    Attributes:
        requests: the request class per api key (ApiVersions included).
        api_keys: what ApiVersions advertises; None: every request class's version range,
            ApiVersions itself left out (as Fluvio's SPU does).
        decode: ``(payload) -> (header, request)``; raises ``UnsupportedRequest`` (the header
            decoded, the rest is not served) or ``DecodeError``. Default: ``decode_request``.
        refuse: the reply to an ``UnsupportedRequest``.
    """

    requests: Mapping[int, type]
    api_keys: Sequence[ApiVersionKey] | None = None
    decode: Callable[[bytes], tuple[RequestHeader, Any]] | None = None
    refuse: Callable[[RequestHeader, UnsupportedRequest], Reply] = refuse_unsupported

    def read(self, payload: bytes) -> tuple[RequestHeader, Any]:
        if self.decode is not None:
            return self.decode(payload)
        return decode_request(payload, self.requests)

    def api_versions(self) -> ApiVersionsResponse:
        """The ApiVersions answer: this API's keys and the platform version."""
        keys = self.api_keys
        if keys is None:
            keys = [ApiVersionKey(int(k), c.MIN_API_VERSION, c.MAX_API_VERSION)
                    for k, c in self.requests.items() if k != API_VERSIONS_KEY]
        return ApiVersionsResponse(OK, list(keys), PLATFORM_VERSION)


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How many bytes a request may hold, checked before it is decoded: ``max_bytes``, or
    ``by_key[api_key]`` for the keys that carry bulk (Produce's records, Create's SmartModule)."""

    max_bytes: int
    by_key: Mapping[int, int] = field(default_factory=dict)

    def for_key(self, api_key: int | None) -> int:
        return self.by_key.get(api_key, self.max_bytes)


class RequestTooLarge(DecodeError):
    """A request over its size limit, refused before decoding."""


def read_request(payload: bytes, registry: ApiRegistry,
                 limits: RequestLimits) -> tuple[RequestHeader, Any]:
    """Bound, then decode one request payload (no size prefix).

    Raises:
        RequestTooLarge: over ``limits`` for its api key; nothing was decoded.
        UnsupportedRequest: the header decoded, the key or version is not served (carries it).
        DecodeError: the bytes are malformed.
    """
    limit = limits.for_key(peek_api_key(payload))
    if len(payload) > limit:
        raise RequestTooLarge(f"{len(payload)}-byte request over the {limit}-byte limit")
    return registry.read(payload)


async def send_reply(conn: ServerConnection, header: RequestHeader, reply: Reply, *,
                     last: bool = False) -> None:
    """Encode and send what a handler or gate returned (see the module docstring); ``last``:
    the task ends after it (``ServerConnection.send``)."""
    if reply is None:
        return
    if isinstance(reply, Refusal):
        await conn.send(encode_error_response(header.correlation_id, reply.error), last=last)
        if reply.close:
            conn.close()
        return
    await conn.send(encode_response(reply, header.correlation_id, header.api_version), last=last)


def members_only(ctx, conn: ServerConnection, header: RequestHeader, req) -> Reply:
    """The gate of a private port: only cluster members (``ctx.policy``'s "member" action) may
    call it; anyone else gets PermissionDenied and is hung up on."""
    if allowed(ctx.policy, conn, "member"):
        return None
    log.warning("private %s: %s is not a member; refused", conn.peer, principal_of(conn))
    return Refusal(Error(ErrorCode.PermissionDenied), close=True)


def serve_api(registry: ApiRegistry, handlers: Mapping[int, ApiHandler], limits: RequestLimits,
              ctx: Any, *, gate: Gate | None = None, name: str = "",
              inline: frozenset[int] = frozenset()) -> Handler:
    """The ``serve_tcp`` handler that serves ``registry``'s API with ``handlers`` (one per api
    key but ApiVersions, which is answered here), each called as ``handler(ctx, conn, header,
    request)``. ``name`` prefixes log lines ("private"). ``inline``: api keys whose handlers
    never wait (but to send their answer); the connection's reader runs them itself
    (``ServerConnection``, "Quick requests run in the reader").

    Raises:
        ValueError: a key of the registry has no handler, or a handler no key.
    """
    served = set(registry.requests) - {API_VERSIONS_KEY}
    if served != set(handlers):
        raise ValueError(f"handlers for keys {sorted(handlers)}, registry serves {sorted(served)}")
    what = f"{name} " if name else ""

    async def handle(conn: ServerConnection, payload: bytes) -> None:
        try:
            header, req = read_request(payload, registry, limits)
        except UnsupportedRequest as e:
            await send_reply(conn, e.header, registry.refuse(e.header, e), last=True)
            return
        except DecodeError as e:
            log.warning("%s%s: %s, closing", what, conn.peer, e)
            conn.close()
            return
        try:
            if header.api_key == API_VERSIONS_KEY:
                reply = registry.api_versions()
            else:
                reply = gate(ctx, conn, header, req) if gate is not None else None
                if reply is None:
                    reply = await handlers[header.api_key](ctx, conn, header, req)
            await send_reply(conn, header, reply, last=True)  # the handler's task ends after it
        except ConnectionLost:
            return  # the client went away mid-request: nothing to answer
        except Exception as e:  # a bug of ours: answer with an error, keep the connection and server
            log.exception("%s%s: %s failed", what, conn.peer, type(req).__name__)
            await conn.send(encode_error_response(
                header.correlation_id, Error.other(f"internal error: {type(e).__name__}: {e}")))

    if inline:
        handle.runs_inline = lambda payload: peek_api_key(payload) in inline  # type: ignore[attr-defined]
    return handle

