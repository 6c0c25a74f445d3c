"""The first step of every server handler: bound, decode, or answer/close."""

from __future__ import annotations

import logging
from typing import Any

from fluvial.errors import Error
from fluvial.protocol.api import RequestHeader, UnsupportedRequest, decode_request, encode_error_response
from fluvial.protocol.codec import DecodeError

log = logging.getLogger("fluvial.net")


async def decode_or_refuse(conn, payload: bytes, registry: dict[int, type], max_bytes: int,
                           what: str = "") -> tuple[RequestHeader, Any] | None:
    """Decode a request, or deal with it and return None.

    * larger than ``max_bytes``: close the connection before decoding (megabytes of empty list
      entries would otherwise become millions of objects on the event loop);
    * unknown api key or version: answer with an ErrorCode frame, keep the connection;
    * undecodable: close the connection (the peer is out of sync or hostile).
    """
    if len(payload) > max_bytes:
        log.warning("%s%s: %d-byte request over the %d-byte limit, closing", what, conn.peer,
                    len(payload), max_bytes)
        conn.close()
        return None
    try:
        return decode_request(payload, registry)
    except UnsupportedRequest as e:
        await conn.send(encode_error_response(e.header.correlation_id, Error.other(str(e))))
    except DecodeError as e:
        log.warning("%s%s: undecodable request, closing: %s", what, conn.peer, e)
        conn.close()
    return None
