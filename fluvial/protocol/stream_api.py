"""fluvial's SPU request for bounded-stream sessions (``fluvial.spu.stream_sessions``).

Key 9003 on the SPU's public port, version 0 (sent only by fluvial's stream sinks, to the
leader of the stream's partition, every third of the session timeout)::

    StreamKeepAliveRequest  => topic:string  partition:u32  stream:string  session_ms:u32
    StreamKeepAliveResponse => error_code:ErrorCode

The leader aborts a stream (appends its abort marker) whose sink sent nothing for
``session_ms`` (capped at ``markers.MAX_SESSION_MS``) and did not end it.

Key 9004, version 0: a consumer is done with StreamFetch streams of this connection (the ids the
SPU put in their responses). Fluvio's protocol has no way to end a stream but closing the
connection, so a long-lived connection would otherwise keep one parked stream (and one of the
connection's request slots) per consumer ever opened on it::

    CloseStreamsRequest  => stream_ids:[u32]
    CloseStreamsResponse => error_code:ErrorCode

Unknown ids are ignored (the stream may have ended already).
"""

from __future__ import annotations

from typing import ClassVar

from fluvial.errors import Error
from fluvial.protocol.api import ApiVersionKey, Request
from fluvial.protocol.codec import ERROR_CODE, STR, U32, Vec, message, wire

STREAM_KEEP_ALIVE_KEY = 9003


@message
class StreamKeepAliveResponse:
    error_code: Error = wire(ERROR_CODE)


@message
class StreamKeepAliveRequest(Request):
    API_KEY: ClassVar[int] = STREAM_KEEP_ALIVE_KEY
    Response: ClassVar[type] = StreamKeepAliveResponse

    topic: str = wire(STR)
    partition: int = wire(U32)
    stream: str = wire(STR)
    session_ms: int = wire(U32)


CLOSE_STREAMS_KEY = 9004


@message
class CloseStreamsResponse:
    error_code: Error = wire(ERROR_CODE)


@message
class CloseStreamsRequest(Request):
    API_KEY: ClassVar[int] = CLOSE_STREAMS_KEY
    Response: ClassVar[type] = CloseStreamsResponse

    stream_ids: list = wire(Vec(U32))


STREAM_API_VERSION = ApiVersionKey(STREAM_KEEP_ALIVE_KEY, 0, 0)
CLOSE_STREAMS_API_VERSION = ApiVersionKey(CLOSE_STREAMS_KEY, 0, 0)

__all__ = ["CLOSE_STREAMS_API_VERSION", "CLOSE_STREAMS_KEY", "CloseStreamsRequest",
           "CloseStreamsResponse", "STREAM_API_VERSION", "STREAM_KEEP_ALIVE_KEY",
           "StreamKeepAliveRequest", "StreamKeepAliveResponse"]
