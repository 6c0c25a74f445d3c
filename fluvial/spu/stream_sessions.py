"""Bounded-stream sessions on the leader: a sink that vanishes is declared aborted.

Theory of operation
-------------------
A stream sink (``fluvial.client.stream``) writes a BEGIN marker holding its session timeout, then
sends ``StreamKeepAliveRequest`` to the partition's leader every third of that timeout until it
writes EOS or ABORT. The leader keeps, per open stream, when it last heard of the sink
(``StreamSessions``, pure). A stream not heard of for its session timeout is *expired*: the
leader appends the stream's ABORT marker itself, so every source of it ends with
``StreamIncomplete`` instead of waiting for ever.

The sessions of a partition are rebuilt when this SPU becomes its leader (a restart or a
failover): every BEGIN in the log without a later EOS or ABORT opens a session that starts
*now*, so a sink that is still alive has a whole timeout to reach the new leader, and one that
died with the old leader is aborted by the new one. Only control batches are read for that.

A marker appended through Produce ends (EOS, ABORT) or opens (BEGIN) a session at once
(``note_markers``, from the produce handler).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from fluvial.access import allowed
from fluvial.errors import OK, Error, ErrorCode
from fluvial.protocol.stream_api import StreamKeepAliveRequest, StreamKeepAliveResponse
from fluvial.protocol.markers import (
    MAX_SESSION_MS, Marker, MarkerKind, encode_marker, is_control, marker_of,
)
from fluvial.protocol.record import records_section
from fluvial.protocol.record_headers import decode_header_records
from fluvial.protocol.batch import check_batch, iter_batches
from fluvial.protocol.codec import DecodeError

log = logging.getLogger("fluvial.spu")

CHECK_INTERVAL = 0.2  # seconds between checks for expired sessions

Key = tuple[str, int]  # (topic, partition)


@dataclass
class _Session:
    deadline: float
    session: float


class StreamSessions:
    """Open streams per partition and when each expires (times: any monotonic clock, seconds).

    Example: touch(("t", 0), "s", 2000, now=10) -> expires at 12; touch again at 11 -> 13;
    expired(13) -> [(("t", 0), "s")]; ended(("t", 0), "s") forgets it.
    """

    def __init__(self) -> None:
        self._open: dict[Key, dict[str, _Session]] = {}
        self.rebuilt: dict[Key, object] = {}  # partition -> the leadership its sessions are from

    def touch(self, key: Key, stream: str, session_ms: int, now: float) -> None:
        seconds = min(max(session_ms, 1), MAX_SESSION_MS) / 1000
        self._open.setdefault(key, {})[stream] = _Session(now + seconds, seconds)

    def ended(self, key: Key, stream: str) -> None:
        streams = self._open.get(key)
        if streams is not None:
            streams.pop(stream, None)

    def is_open(self, key: Key, stream: str) -> bool:
        return stream in self._open.get(key, {})

    def expired(self, now: float) -> list[tuple[Key, str]]:
        return [(key, s) for key, streams in self._open.items() for s, v in streams.items()
                if v.deadline <= now]

    def forget(self, key: Key) -> None:
        self._open.pop(key, None)
        self.rebuilt.pop(key, None)

    def rebuild(self, key: Key, markers: list[Marker], now: float) -> None:
        """Open a session (from ``now``) for every stream whose BEGIN has no later end."""
        self._open.pop(key, None)
        open_: dict[str, int] = {}
        for m in markers:
            if m.kind is MarkerKind.BEGIN:
                open_[m.stream] = m.session_ms or MAX_SESSION_MS
            else:
                open_.pop(m.stream, None)
        for stream, ms in open_.items():
            self.touch(key, stream, ms, now)


def markers_in(record_set: bytes) -> list[Marker]:
    """The markers of the control batches of a record set (others are not decoded).

    Raises:
        DecodeError: a malformed batch.
    """
    out = []
    for pos, h in iter_batches(record_set, verify_crc=False):
        if not is_control(h.attributes):
            continue
        data, p, e, count = records_section(record_set, pos, h)
        for r in decode_header_records(data, p, e, count, h.base_offset, h.first_timestamp):
            m = marker_of(r.headers)
            if m is not None:
                out.append(m)
    return out


def has_control_batch(record_set: bytes) -> bool:
    """Whether the first batch of a record set is a control batch (markers are sent alone)."""
    try:
        return len(record_set) > 0 and is_control(check_batch(record_set, verify_crc=False).attributes)
    except DecodeError:
        return False


def note_markers(ctx, topic: str, partition: int, record_set: bytes) -> None:
    """A produce appended ``record_set`` as leader: open or end the sessions its markers name."""
    sessions = getattr(ctx, "stream_sessions", None)
    if sessions is None or not has_control_batch(record_set):
        return
    try:
        markers = markers_in(record_set)
    except DecodeError:
        return
    for m in markers:
        if m.kind is MarkerKind.BEGIN:
            sessions.touch((topic, partition), m.stream, m.session_ms or MAX_SESSION_MS,
                           trio.current_time())
        else:
            sessions.ended((topic, partition), m.stream)


def log_markers(replica) -> list[Marker]:
    """Every marker in a replica's log, in offset order (control batches only are read); none
    when the replica was closed meanwhile (its topic deleted)."""
    storage = replica.storage
    out = []
    try:
        headers = list(storage.batch_headers())
    except Exception as e:  # closed, or its storage failed: nothing to track there
        log.warning("%s-%d: reading markers: %s", replica.topic, replica.partition, e)
        return out
    for h in headers:
        if not is_control(h.attributes):
            continue
        try:
            out += markers_in(storage.read(h.base_offset, 1).read_bytes()[:h.size])
        except Exception as e:  # a batch gone or unreadable: that stream is not tracked
            log.warning("%s-%d: reading the marker at %d: %s", replica.topic, replica.partition,
                        h.base_offset, e)
    return out


async def run_stream_sessions(ctx) -> None:
    """The leader's side of stream sessions: rebuild them on taking leadership, abort expired
    ones. Runs for the SPU's lifetime."""
    sessions = ctx.stream_sessions = StreamSessions()
    while True:
        await trio.sleep(CHECK_INTERVAL)
        try:
            await _round(ctx, sessions)
        except Exception:  # a bug of ours must not take the SPU down: log it, go on
            log.exception("stream sessions round failed")


async def _round(ctx, sessions: StreamSessions) -> None:
    """Rebuild the sessions of partitions this SPU has just come to lead; abort expired ones."""
    now = trio.current_time()
    for key, replica in list(ctx.replicas.items()):
        st = replica.leader_state
        if st is None:
            if key in sessions.rebuilt:
                sessions.forget(key)
            continue
        if sessions.rebuilt.get(key) is not st:
            sessions.rebuild(key, await trio.to_thread.run_sync(log_markers, replica), now)
            sessions.rebuilt[key] = st
    for key, stream in sessions.expired(now):
        replica = ctx.replicas.get(key)
        if replica is None or not replica.is_leader:
            sessions.ended(key, stream)
            continue
        batch = encode_marker(MarkerKind.ABORT, stream, first_timestamp=time.time_ns() // 1_000_000)
        try:
            result = replica.append_nowait(batch)
            with trio.move_on_after(5.0):
                await replica.wait_durable(result.leo)  # what moves the HW (group commit)
        except Exception as e:  # not leader any more, a full disk: try again next round
            log.warning("%s-%d: cannot abort stream %r: %s", key[0], key[1], stream, e)
            continue
        log.info("%s-%d: stream %r aborted: its sink was silent past its session timeout",
                 key[0], key[1], stream)
        sessions.ended(key, stream)


async def handle_stream_keep_alive(ctx, conn, header, req: StreamKeepAliveRequest
                                   ) -> StreamKeepAliveResponse:
    """A sink is alive: push its stream's expiry back. Only a stream whose BEGIN this leader
    knows is kept (a keep-alive never reopens an ended stream)."""
    if not allowed(ctx.policy, conn, "produce", "topic", req.topic):
        return StreamKeepAliveResponse(Error(ErrorCode.PermissionDenied))
    replica = ctx.replicas.get((req.topic, req.partition))
    if replica is None or not replica.is_leader:
        return StreamKeepAliveResponse(Error(ErrorCode.NotLeaderForPartition))
    sessions = getattr(ctx, "stream_sessions", None)
    key = (req.topic, req.partition)
    if sessions is not None and sessions.is_open(key, req.stream):
        sessions.touch(key, req.stream, req.session_ms, trio.current_time())
    return StreamKeepAliveResponse(OK)
