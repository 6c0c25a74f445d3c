"""The decisions of bounded streams (``fluvial.client.stream``), pure: what a source does with
each record it reads, and what a sink may do next.

Source: ``SourceState.feed(record)`` for every record (markers included) of the stream's
partition, in offset order, says ``DELIVER`` (a record of this stream: hand it out), ``SKIP``
(another stream's, a plain record, or this stream's BEGIN), ``END`` (this stream's EOS: stop,
complete) or ``ABORTED`` (its abort marker: raise ``StreamIncomplete``). Records at or below
``last_offset`` (a resumed read that starts earlier) are skipped, so a record is handed out at
most once, and ``last_offset`` is the durable position a resume starts after.

Sink: ``SinkState`` is the life cycle ``open -> closing -> closed`` (or ``aborted``): sending
needs ``open``; a second close, or a send after close, is an error; ``EOS`` is written only from
``closing``, after every record is acknowledged. ``unacked_bytes`` is the back-pressure budget's
count: the sink waits while it is above ``max_unacked_bytes``.
"""

from __future__ import annotations

from enum import Enum

from fluvial.protocol.markers import MarkerKind, marker_of, stream_id_bytes, stream_of

DEFAULT_MAX_UNACKED_BYTES = 1 << 20  # a sink's back-pressure budget
DEFAULT_SESSION_TIMEOUT = 30.0  # seconds after which the leader aborts a silent sink's stream


class Action(str, Enum):
    DELIVER = "deliver"
    SKIP = "skip"
    END = "end"
    ABORTED = "aborted"


class SourceState:
    """What a source of stream ``stream`` does with each record (see the module docstring)."""

    def __init__(self, stream: str | int):
        self.stream = str(stream)
        self._sid = stream_id_bytes(stream)
        self.last_offset: int | None = None  # of the last record fed past (delivered or not)
        self.delivered = 0
        self.began = False
        self.done: Action | None = None  # END or ABORTED once seen

    def feed(self, record) -> Action:
        """``record``: a ``fluvial.Record`` (``offset``, ``headers``, ``is_control``)."""
        if self.done is not None:
            return self.done
        if self.last_offset is not None and record.offset <= self.last_offset:
            return Action.SKIP
        self.last_offset = record.offset
        headers = record.headers
        if record.is_control:
            m = marker_of(headers)
            if m is None or m.stream != self.stream:
                return Action.SKIP
            if m.kind is MarkerKind.BEGIN:
                self.began = True
                return Action.SKIP
            self.done = Action.END if m.kind is MarkerKind.EOS else Action.ABORTED
            return self.done
        if stream_of(headers) != self._sid:
            return Action.SKIP
        self.delivered += 1
        return Action.DELIVER


class SinkClosed(Exception):
    """A send after close, or a second close."""


class SinkState:
    """A sink's life cycle and its unacknowledged bytes (see the module docstring)."""

    def __init__(self, max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES):
        if max_unacked_bytes < 1:
            raise ValueError(f"max_unacked_bytes must be positive, not {max_unacked_bytes}")
        self.max_unacked_bytes = max_unacked_bytes
        self.state = "open"
        self.unacked_bytes = 0

    def check_send(self) -> None:
        if self.state != "open":
            raise SinkClosed(f"the sink is {self.state}: no more records")

    def sent(self, size: int) -> None:
        self.unacked_bytes += size

    def acked(self, size: int) -> None:
        self.unacked_bytes -= size

    def over_budget(self) -> bool:
        return self.unacked_bytes > self.max_unacked_bytes

    def start_close(self) -> None:
        """``open -> closing``: the EOS follows once everything is acknowledged."""
        if self.state != "open":
            raise SinkClosed(f"the sink is already {self.state}")
        self.state = "closing"

    def closed(self) -> None:
        self.state = "closed"

    def abort(self) -> bool:
        """The sink failed: True if an abort marker should be written (not after an EOS)."""
        if self.state in ("closed", "aborted"):
            return False
        self.state = "aborted"
        return True


__all__ = [
    "DEFAULT_MAX_UNACKED_BYTES", "DEFAULT_SESSION_TIMEOUT", "Action", "SinkClosed", "SinkState",
    "SourceState",
]
