"""Bounded streams in a topic: how a stream's records and its markers look in the log.

Theory of operation
-------------------
A *stream* (``fluvial.client.stream``) is a named sequence of records in one partition of a topic,
opened by a begin marker and closed by an end-of-stream (EOS) or abort marker. Several streams may
share a topic and its partitions; other records may sit between them.

* **Data records** are ordinary records with one header ``("fluvial-stream", ID)`` (ID as UTF-8);
  any other headers are the sender's. Every consumer sees them as data.
* **Markers** are *control batches*: attributes ``ATTR_CONTROL`` (0x20, Kafka's control bit) and
  ``ATTR_HEADERS`` (0x40), one record, key ``b"fluvial-stream"``, value ``b"<KIND> <ID>"``
  (``BEGIN``, ``EOS`` or ``ABORT``) and headers ``("fluvial-stream", ID)``,
  ``("fluvial-marker", KIND)`` and, on BEGIN, ``("fluvial-session-ms", ms)``: the sink's session
  timeout, after which the leader aborts a stream whose sink went silent.
  fluvial's consumers skip control batches (offsets still advance past them); a stream source
  reads them. An official client gets them with headers stripped (as every headers batch,
  ``record_headers``), i.e. as one record ``key="fluvial-stream"``, value ``"EOS <ID>"``: a
  valid record it reads without error.

Pure: no I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from fluvial.protocol.record_headers import ATTR_HEADERS, encode_headers_batch, set_attributes

ATTR_CONTROL = 0x20
STREAM_HEADER = "fluvial-stream"
MARKER_HEADER = "fluvial-marker"
SESSION_HEADER = "fluvial-session-ms"
MARKER_KEY = b"fluvial-stream"
MAX_SESSION_MS = 60_000


class MarkerKind(str, Enum):
    BEGIN = "BEGIN"
    EOS = "EOS"
    ABORT = "ABORT"


class Marker(NamedTuple):
    kind: MarkerKind
    stream: str
    session_ms: int | None = None


def stream_id_bytes(stream: str | int) -> bytes:
    """A stream id as it is written (UTF-8 of its ``str``).

    Raises:
        ValueError: an empty id.
    """
    s = str(stream)
    if not s:
        raise ValueError("a stream id must not be empty")
    return s.encode()


def encode_marker(kind: MarkerKind, stream: str | int, *, first_timestamp: int,
                  session_ms: int | None = None, compression: int = 0) -> bytes:
    """One control batch holding the marker (base offset 0, as a producer sends it),
    compressed with ``compression`` (a topic with a fixed codec accepts only that one)."""
    sid = stream_id_bytes(stream)
    headers = [(STREAM_HEADER, sid), (MARKER_HEADER, kind.value.encode())]
    if session_ms is not None:
        headers.append((SESSION_HEADER, str(int(session_ms)).encode()))
    batch = encode_headers_batch([(MARKER_KEY, kind.value.encode() + b" " + sid, tuple(headers))],
                                 first_timestamp=first_timestamp, compression=compression)
    return set_attributes(batch, compression | ATTR_HEADERS | ATTR_CONTROL)


def is_control(attributes: int) -> bool:
    return bool(attributes & ATTR_CONTROL)


def marker_of(headers) -> Marker | None:
    """The marker a control record's headers describe, or None if they describe none."""
    h = dict(headers)
    kind, sid = h.get(MARKER_HEADER), h.get(STREAM_HEADER)
    if kind is None or sid is None:
        return None
    try:
        k = MarkerKind(kind.decode())
        session = h.get(SESSION_HEADER)
        return Marker(k, sid.decode(), int(session) if session is not None else None)
    except (ValueError, UnicodeDecodeError):
        return None


def stream_of(headers) -> bytes | None:
    """The stream id (bytes) a data record's headers name, or None."""
    for k, v in headers:
        if k == STREAM_HEADER:
            return v
    return None


def user_headers(headers) -> tuple:
    """A data record's headers without the stream's own."""
    return tuple((k, v) for k, v in headers if k != STREAM_HEADER)


__all__ = [
    "ATTR_CONTROL", "MARKER_HEADER", "MARKER_KEY", "MAX_SESSION_MS", "Marker", "MarkerKind",
    "SESSION_HEADER", "STREAM_HEADER", "encode_marker", "is_control", "marker_of",
    "stream_id_bytes", "stream_of", "user_headers",
]
