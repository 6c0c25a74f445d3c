"""Errors raised by the trio transport (fluvial.net).

Split by blame, as in h11: ``LocalProtocolError`` is our own misuse (a frame whose size prefix
does not match its bytes), the peer's faults end the connection and surface as
``fluvial.errors.ConnectionLost``. Both timeouts and lost connections are retriable
(``fluvial.errors.Retriable``). A timeout measured here is a ``LocalTimeout``; a TLS failure is
a ``TlsHandshakeError`` (the client raises it for a connection an ``ssl.SSLError`` ended), so
callers match on types, never on messages.
"""

from __future__ import annotations

from fluvial.errors import ConnectionLost, Error, ErrorCode, LocalTimeout


class RequestTimeout(LocalTimeout):
    """No response arrived within the caller's timeout. The connection stays usable; a late
    response for the abandoned correlation id is discarded."""

    def __init__(self, timeout_seconds: float, detail: str):
        # Fluvio's RequestTimedOut payload is (timeout_ms: u64, kind: RequestKind); kind 0 is the
        # only variant (Produce), so the detail text carries what actually timed out.
        super().__init__(Error(ErrorCode.RequestTimedOut, (int(timeout_seconds * 1000), 0)), detail)
        self.timeout_seconds = timeout_seconds


class ConnectError(ConnectionLost):
    """Opening a connection failed: TCP connect refused or unreachable, or TLS failed (the
    subclass ``TlsHandshakeError``)."""


class TlsHandshakeError(ConnectError):
    """TLS failed while connecting: the server's certificate is not trusted or names another host,
    the server refused ours (with TLS 1.3 that refusal arrives on the first read, after the
    client's side of the handshake), or the peer does not speak TLS."""


class LocalProtocolError(ValueError):
    """We were asked to send something that is not a whole frame (our bug, caught before any byte
    is written, so the connection stays in sync)."""


__all__ = ["ConnectError", "ConnectionLost", "LocalProtocolError", "RequestTimeout", "TlsHandshakeError"]
