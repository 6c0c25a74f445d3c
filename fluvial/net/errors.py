"""Errors raised by the trio transport (fluvial.net).

Split by blame, as in h11: ``LocalProtocolError`` is our own misuse (a frame whose size prefix
does not match its bytes), the peer's faults end the connection and surface as
``fluvial.errors.ConnectionLost``. Both timeouts and lost connections are retriable.
"""

from __future__ import annotations

from fluvial.errors import ConnectionLost, Error, ErrorCode, error_class

# The class errors.py generates for ErrorCode.RequestTimedOut, so that
# ``except RequestTimedOutError`` also catches a client-side timeout.
_RequestTimedOutError = error_class(ErrorCode.RequestTimedOut)


class RequestTimeout(_RequestTimedOutError):
    """No response arrived within the caller's timeout. The connection stays usable; a late
    response for the abandoned correlation id is discarded."""

    code = ErrorCode.RequestTimedOut

    def __init__(self, timeout_seconds: float, detail: str):
        # Fluvio's RequestTimedOut payload is (timeout_ms: u64, kind: RequestKind); kind 0 is the
        # only variant (Produce), so the detail text carries what actually timed out.
        super().__init__(Error(ErrorCode.RequestTimedOut, (int(timeout_seconds * 1000), 0)), detail)
        self.timeout_seconds = timeout_seconds


class ConnectError(ConnectionLost):
    """Opening a connection failed: TCP connect refused or unreachable, or the TLS handshake
    failed."""


class LocalProtocolError(ValueError):
    """We were asked to send something that is not a whole frame (our bug, caught before any byte
    is written, so the connection stays in sync)."""


__all__ = ["ConnectError", "ConnectionLost", "LocalProtocolError", "RequestTimeout"]
