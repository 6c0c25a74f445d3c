"""fluvial's SPU request that turns record headers on for one connection.

Key 9002 on the SPU's public port, version 0, advertised in the SPU's ApiVersions (an official
client ignores keys it does not know). Until a connection sends it, the SPU strips headers from
every record it serves there (``fluvial.protocol.record_headers.strip_record_set``); see
docs/internal-protocol.md::

    EnableRecordHeadersRequest  => (no fields)
    EnableRecordHeadersResponse => error_code:ErrorCode
"""

from __future__ import annotations

from typing import ClassVar

from fluvial.errors import Error
from fluvial.protocol.api import ApiVersionKey, Request
from fluvial.protocol.codec import ERROR_CODE, message, wire

ENABLE_RECORD_HEADERS_KEY = 9002


@message
class EnableRecordHeadersResponse:
    error_code: Error = wire(ERROR_CODE)


@message
class EnableRecordHeadersRequest(Request):
    API_KEY: ClassVar[int] = ENABLE_RECORD_HEADERS_KEY
    Response: ClassVar[type] = EnableRecordHeadersResponse


HEADERS_API_VERSION = ApiVersionKey(ENABLE_RECORD_HEADERS_KEY, 0, 0)

__all__ = ["ENABLE_RECORD_HEADERS_KEY", "HEADERS_API_VERSION", "EnableRecordHeadersRequest",
           "EnableRecordHeadersResponse"]
