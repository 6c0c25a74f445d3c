"""The client half of a multiplexed Fluvio connection, sans-IO.

Theory of operation
-------------------
``ClientProtocol`` is the bookkeeping of one client connection, with no sockets and no trio
(../shared/fluvio-protocol/README.md §4.4; the same shape as kafka-python's ``KafkaProtocol``):

* ``start_request(req, version, sink)`` assigns the next correlation id, remembers ``sink`` under
  it and returns ``(correlation_id, frame_pieces)``; the caller writes the pieces, in order.
* ``receive_data(data)`` is fed whatever the transport read and returns ``(sink, payload)`` for
  every complete response frame whose correlation id is outstanding. ``payload`` is the whole
  response payload (correlation id included), ready for ``api.decode_response``.
* A plain request is answered by exactly one frame: its id is forgotten when the frame arrives.
  A stream request (``stream=True``) keeps its id until ``forget(id)``: every frame carrying it
  goes to the same sink. Frames for ids that are not outstanding are dropped and counted
  (Fluvio's dispatcher does the same).
* ``forget(id)`` is for callers that give up (timeout, stream closed). ``fail_all()`` returns every
  sink and clears the table, for when the connection is gone.

Correlation ids start at 1 and go up by one, as in Fluvio's multiplexer, wrapping from 2**31-1
back to 1 and skipping ids still outstanding. A sink is any object: the I/O layer decides what it
is (an event, a channel). Malformed input (a bad size prefix, a payload shorter than a
correlation id) raises ``DecodeError``; the connection is then out of sync and must be closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluvial.protocol.api import encode_request_pieces, response_correlation_id
from fluvial.protocol.frame import DEFAULT_MAX_FRAME_BYTES, FrameDecoder

_MAX_CORRELATION_ID = 2**31 - 1


@dataclass(slots=True)
class _Pending:
    sink: Any
    stream: bool


@dataclass(frozen=True, slots=True)
class ClientProtocolStatistics:
    outstanding_requests: int
    outstanding_streams: int
    frames_received: int
    frames_dropped: int


class ClientProtocol:
    """Correlation ids, request encoding and response routing for one connection.

    Args:
        client_id: the header's client_id when ``start_request`` is not given one.
        max_frame_bytes: the largest response payload accepted; a larger size prefix raises
            ``FrameTooLarge`` before anything is buffered.
    """

    def __init__(self, *, client_id: str = "fluvial",
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self.client_id = client_id
        self._decoder = FrameDecoder(max_frame_bytes)
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._frames_received = 0
        self._frames_dropped = 0

    def _allocate_id(self) -> int:
        if len(self._pending) >= _MAX_CORRELATION_ID:
            raise RuntimeError("every correlation id is outstanding")
        while True:
            corr = self._next_id
            self._next_id = 1 if corr == _MAX_CORRELATION_ID else corr + 1
            if corr not in self._pending:
                return corr

    def start_request(self, req: Any, version: int, sink: Any, *, client_id: str | None = None,
                      stream: bool = False) -> tuple[int, list[bytes]]:
        """Register ``sink`` under a fresh correlation id and encode ``req``.

        Returns:
            ``(correlation_id, pieces)``: the whole frame, size prefix included, in pieces for
            one writev (``encode_request_pieces``: a producer's large batches are not copied).
        Raises:
            EncodeError: ``req`` does not encode; nothing is registered.
        """
        corr = self._allocate_id()
        client_id = self.client_id if client_id is None else client_id
        pieces = encode_request_pieces(req, corr, version, client_id)
        self._pending[corr] = _Pending(sink, stream)
        return corr, pieces

    def read_size(self, least: int) -> int:
        """How many bytes to read next (``FrameDecoder.read_size``)."""
        return self._decoder.read_size(least)

    def receive_data(self, data: bytes | bytearray | memoryview,
                     owned: bool = False) -> list[tuple[Any, bytes]]:
        """Feed bytes read from the transport; returns ``(sink, payload)`` per routed frame.
        ``owned``: the caller hands ``data`` over (``FrameDecoder.feed``).

        Raises:
            DecodeError: a size prefix is negative or too large, or a payload is shorter than a
                correlation id. The protocol object is unusable afterwards.
        """
        out = []
        for payload in self._decoder.feed(data, owned):
            self._frames_received += 1
            corr = response_correlation_id(payload)
            pending = self._pending.get(corr)
            if pending is None:
                self._frames_dropped += 1
                continue
            if not pending.stream:
                del self._pending[corr]
            out.append((pending.sink, payload))
        return out

    def forget(self, correlation_id: int) -> None:
        """Stop routing ``correlation_id``; later frames carrying it are dropped."""
        self._pending.pop(correlation_id, None)

    def is_outstanding(self, correlation_id: int) -> bool:
        return correlation_id in self._pending

    def fail_all(self) -> list[Any]:
        """Every registered sink, in registration order; the table is left empty."""
        sinks = [p.sink for p in self._pending.values()]
        self._pending.clear()
        return sinks

    def statistics(self) -> ClientProtocolStatistics:
        streams = sum(1 for p in self._pending.values() if p.stream)
        return ClientProtocolStatistics(
            outstanding_requests=len(self._pending) - streams,
            outstanding_streams=streams,
            frames_received=self._frames_received,
            frames_dropped=self._frames_dropped,
        )
