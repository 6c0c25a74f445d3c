"""A member of a consumer group: ``fl.consumer(topic, group="billing")``.

The members of a group share the topic's partitions; the coordinator (the SPU leading
``consumer-offset``-0, ``fluvial.spu.group_coordinator``) says which member reads which.

Theory of operation
-------------------
``_ensure_started`` joins (JoinGroup with a fresh member id) and starts the membership task in
the client's nursery. That task heartbeats in a loop (a long poll: the coordinator answers at
once when something changed for this member, else after ``heartbeat_interval``), reporting the
partitions it reads, and applies each answer:

* a partition it reads that the answer no longer lists is revoked: its reader stops, what was
  consumed is committed (``commit="auto"``), records still buffered are dropped, and the next
  heartbeat says it is no longer read (only then may another member get it);
* a partition the answer lists that it does not read gets a reader: a one-partition ``Consumer``
  from the committed offset, or the group's start (``beginning``/``end``) when there is none;
* the partitions it keeps are not touched: they keep flowing through the rebalance.

Each reader feeds ``(partition, token, records)`` into one channel; ``__anext__`` and
``receive_many`` hand them out, skipping those of a revoked reader (its token is stale).

Offsets: what is *consumed* is what was handed out before the latest pull (asking for more
means the previous records were processed), or, on ``await commit()``, everything handed out.
With ``commit="auto"`` consumed offsets are committed every ``auto_commit_interval`` seconds,
on revocation and on close: at-least-once, duplicates only from work not yet committed. The
committed value is the next offset to read (Kafka's convention).

Failures: a lost coordinator (connection, ``NOT_COORDINATOR``) is looked up again (metadata)
and retried while the session lasts; ``UNKNOWN_MEMBER`` (our session expired: we were a zombie)
stops every reader without committing and joins again.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import trio

from fluvial.client.consumer import Consumer, RecordStream
from fluvial.client.types import Offset, Record
from fluvial.errors import ConnectionLost, FluvialError
from fluvial.metadata.group import START_POLICIES, GroupError
from fluvial.net.errors import RequestTimeout
from fluvial.protocol import group_api as g
from fluvial.protocol.codec import DecodeError

log = logging.getLogger("fluvial.client.group")

__all__ = ["GroupConsumer", "GroupRequestError", "CommitRefusedError", "group_call"]

_RETRY = (ConnectionLost, RequestTimeout, DecodeError, OSError, FluvialError)


class GroupRequestError(FluvialError):
    """The coordinator refused a group request; ``group_error`` is the GroupError."""

    def __init__(self, group_error: int, message: str):
        super().__init__(detail=f"{GroupError(group_error).name}: {message}")
        self.group_error = GroupError(group_error)


class CommitRefusedError(GroupRequestError):
    """A commit was refused: this member no longer owns the partition, or is no member (its
    session expired: it is a zombie and was fenced)."""


async def group_call(fl: Any, req: Any, *, timeout: float | None = None, retry_for: float = 10.0):
    """Send a group request to the coordinator and return the response, finding the coordinator
    again (and retrying) on a lost connection or ``NOT_COORDINATOR`` for up to ``retry_for``
    seconds; any other error comes back in the response."""
    deadline = trio.current_time() + retry_for
    delay = 0.05
    while True:
        try:
            conn = await fl.offsets_connection()
            resp = await conn.call(req, timeout=timeout or fl.request_timeout)
            if resp.error != GroupError.NOT_COORDINATOR:
                return resp
            failure: BaseException = GroupRequestError(resp.error, resp.message)
        except _RETRY as e:
            failure = e
        if trio.current_time() > deadline:
            raise failure
        log.debug("group request %s: %s; retrying", type(req).__name__, failure)
        await fl.metadata.wait_changed(timeout=delay)
        delay = min(delay * 2, 0.5)


@dataclass(eq=False)
class _Reader:
    partition: int
    token: object
    scope: trio.CancelScope
    done: trio.Event


class GroupConsumer(RecordStream):
    """Reads a topic as one member of ``group``. Get one with ``fl.consumer(topic, group=...)``.

    Args:
        topic: the topic (every member of a group reads the same topic).
        group: the group's name.
        start: where a partition with no committed offset starts: "beginning" or "end" (the
            group's setting is the first member's).
        commit: "auto" (consumed offsets are committed every ``auto_commit_interval``, on
            revocation and on close) or "manual" (``await commit()`` only).
        auto_commit_interval: seconds between automatic commits.
        session_timeout: seconds without a heartbeat after which the coordinator drops the
            member and gives its partitions to the others.
        heartbeat_interval: the longest gap between heartbeats (rebalances reach the member at
            once: the heartbeat is a long poll).
        isolation, max_bytes: as ``Consumer``.
        member_id: this member's id (default: a fresh one).
    """

    def __init__(self, fl: Any, topic: str, *, group: str, start: str = "beginning",
                 commit: str = "auto", auto_commit_interval: float = 5.0,
                 session_timeout: float = 10.0, heartbeat_interval: float = 1.0,
                 isolation: Any = None, max_bytes: int | None = None, member_id: str | None = None,
                 buffer: int = 8):
        if commit not in ("auto", "manual"):
            raise ValueError(f"commit must be 'auto' or 'manual', not {commit!r}")
        policy = {"beginning": "earliest", "end": "latest", "earliest": "earliest",
                  "latest": "latest"}.get(start)
        if policy not in START_POLICIES:
            raise ValueError(f"start must be 'beginning' or 'end', not {start!r}")
        if not group:
            raise ValueError("a group name is needed")
        if session_timeout <= 0 or heartbeat_interval <= 0 or heartbeat_interval >= session_timeout:
            raise ValueError("need 0 < heartbeat_interval < session_timeout")
        self._fl = fl
        self.topic = topic
        self.group = group
        self.start = policy
        self.commit_mode = commit
        self.auto_commit_interval = auto_commit_interval
        self.session_timeout = session_timeout
        self.heartbeat_interval = heartbeat_interval
        self._inner: dict[str, Any] = {"isolation": isolation}
        if max_bytes is not None:
            self._inner["max_bytes"] = max_bytes
        self.member_id = member_id or f"{fl.client_id}-{uuid.uuid4().hex[:12]}"
        self.host = f"{socket.gethostname()}/{os.getpid()}"
        self.generation = -1
        self._send, self._receive = trio.open_memory_channel[Any](max(1, buffer))
        self._readers: dict[int, _Reader] = {}
        self._consumed: dict[int, int] = {}  # partition -> next offset after what was processed
        self._stored: dict[int, int] = {}  # partition -> last committed by us
        self._buf: list[Record] = []
        self._buf_reader: _Reader | None = None  # whose records ``_buf`` holds
        self._i = 0
        self._started = False
        self._closed = False
        self._start_lock = trio.Lock()
        self._commit_lock = trio.Lock()
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()
        self._reader_nursery: trio.Nursery | None = None
        self.rebalances = 0  # answers that granted or revoked something

    def __repr__(self) -> str:
        return f"<GroupConsumer topic={self.topic!r} group={self.group!r} member={self.member_id!r}>"

    @property
    def partitions(self) -> list[int]:
        """The partitions this member reads now."""
        return sorted(self._readers)

    # -- lifetime ------------------------------------------------------------------------------

    async def _start(self) -> None:
        await self._join()
        self._fl._consumers.add(self)
        await self._fl.nursery.start(self._run)
        self._started = True

    async def _join(self) -> None:
        topic = await self._fl.metadata.topic(self.topic)
        req = g.JoinGroupRequest(self.group, self.member_id, self._fl.client_id, self.host, self.topic,
                                 topic.spec.partition_count(), int(self.session_timeout * 1000),
                                 self.start)
        resp = await group_call(self._fl, req, retry_for=self.session_timeout)
        if resp.error:
            raise GroupRequestError(resp.error, resp.message)
        self.generation = resp.generation

    async def aclose(self) -> None:
        """Commit what was consumed (``commit="auto"``), stop reading and leave the group, so
        the others get its partitions at once."""
        if self._closed:
            return
        # also when closed by a cancellation (Ctrl-C): shielded, and bounded by request_timeout
        with trio.CancelScope(shield=True), trio.move_on_after(self._fl.request_timeout):
            try:
                if self._started and self.commit_mode == "auto":
                    self._note(self._i)
                    try:
                        await self._commit(self._consumed)
                    except (GroupRequestError, *_RETRY) as e:
                        log.warning("group %s: final commit failed: %s", self.group, e)
            finally:
                self._closed = True
                self._fl._consumers.discard(self)
                if self._scope is not None:
                    self._scope.cancel()
                    await self._done.wait()
                if self._started:
                    try:
                        await group_call(self._fl, g.LeaveGroupRequest(self.group, self.member_id),
                                         retry_for=1.0)
                    except _RETRY as e:
                        log.info("group %s: leave failed (the session will expire): %s", self.group, e)
                self._receive.close()

    # -- membership ----------------------------------------------------------------------------

    async def _run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    self._reader_nursery = nursery
                    task_status.started()
                    next_commit = trio.current_time() + self.auto_commit_interval
                    while True:
                        await self._heartbeat_once()
                        if self.commit_mode == "auto" and trio.current_time() >= next_commit:
                            next_commit = trio.current_time() + self.auto_commit_interval
                            try:
                                await self._commit(self._consumed)
                            except (GroupRequestError, *_RETRY) as e:
                                log.warning("group %s: automatic commit failed: %s", self.group, e)
        except Exception as e:  # noqa: BLE001 - handed to the reader of the records
            log.error("group %s: membership failed: %s", self.group, e)
            with trio.move_on_after(self._fl.request_timeout):
                await self._send.send(e)
        finally:
            self._done.set()

    async def _heartbeat_once(self) -> None:
        wait_ms = int(self.heartbeat_interval * 1000)
        req = g.HeartbeatRequest(self.group, self.member_id, sorted(self._readers), wait_ms)
        try:
            resp = await group_call(self._fl, req, timeout=self.heartbeat_interval + self._fl.request_timeout,
                                    retry_for=self.session_timeout)
        except (GroupRequestError, *_RETRY) as e:
            # the coordinator was unreachable for a whole session: we are out of the group by now
            log.warning("group %s: no heartbeat for a session (%s): stopping and rejoining", self.group, e)
            await self._rejoin()
            return
        if resp.error == GroupError.UNKNOWN_MEMBER:
            log.warning("group %s: %s is no member (%s): stopping and rejoining", self.group,
                        self.member_id, resp.message)
            await self._rejoin()
            return
        if resp.error:
            raise GroupRequestError(resp.error, resp.message)
        self.generation = resp.generation
        assigned = set(resp.assigned)
        offsets = {o.partition: o.offset for o in resp.offsets}
        revoke = [p for p in self._readers if p not in assigned]
        grant = sorted(p for p in assigned if p not in self._readers)
        if revoke:
            for p in revoke:
                await self._stop_reader(p)
            if self.commit_mode == "auto":
                try:
                    await self._commit({p: o for p, o in self._consumed.items() if p in revoke})
                except (GroupRequestError, *_RETRY) as e:
                    log.warning("group %s: commit on revocation failed: %s", self.group, e)
            for p in revoke:
                self._consumed.pop(p, None)
                self._stored.pop(p, None)
        for p in grant:
            start = offsets.get(p)
            if start is not None:
                self._consumed[p] = self._stored[p] = start
            self._start_reader(p, start, resp.start or self.start)
        if revoke or grant:
            self.rebalances += 1
            log.info("group %s: %s generation %d reads %s (revoked %s, granted %s)", self.group,
                     self.member_id, self.generation, sorted(self._readers), sorted(revoke), grant)

    async def _rejoin(self) -> None:
        """Out of the group: stop every reader (nothing to commit: it would be refused), then
        join again, for as long as it takes (a coordinator may be being elected)."""
        await self._drop_all()
        delay = 0.1
        while True:
            try:
                await self._join()
                return
            except (GroupRequestError, *_RETRY) as e:
                if isinstance(e, GroupRequestError) and e.group_error not in (
                        GroupError.NOT_COORDINATOR, GroupError.STORAGE):
                    raise
                log.warning("group %s: rejoining failed (%s); retrying in %.1fs", self.group, e, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _drop_all(self) -> None:
        for p in list(self._readers):
            await self._stop_reader(p)
        self._consumed.clear()
        self._stored.clear()

    def _start_reader(self, p: int, start: int | None, policy: str) -> None:
        if start is not None:
            offset = Offset.absolute(start)
        else:
            offset = Offset.beginning() if policy == "earliest" else Offset.end()
        r = _Reader(p, object(), trio.CancelScope(), trio.Event())
        self._readers[p] = r
        self._reader_nursery.start_soon(self._pump, r, offset)

    async def _stop_reader(self, p: int) -> None:
        r = self._readers.pop(p)
        r.scope.cancel()
        await r.done.wait()

    async def _pump(self, r: _Reader, offset: Offset) -> None:
        c = Consumer(self._fl, self.topic, partition=r.partition, offset=offset, **self._inner)
        try:
            with r.scope:
                while True:
                    records = await c.receive_many()
                    if not records:
                        return
                    await self._send.send((r.partition, r.token, records))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except FluvialError as e:
            log.warning("group %s: reading %s-%d failed: %s", self.group, self.topic, r.partition, e)
            with trio.move_on_after(1):
                await self._send.send(e)
        finally:
            with trio.CancelScope(shield=True):
                await c.aclose()
            r.done.set()

    # -- iteration -----------------------------------------------------------------------------

    def _note(self, upto: int) -> None:
        """The first ``upto`` records of the current list are processed."""
        r = self._buf_reader
        if upto and self._buf and r is not None and self._readers.get(r.partition) is r:
            # only while the reader that read them still runs: after a revocation (and perhaps
            # a new grant, from a later committed offset) they are not ours to commit
            self._consumed[r.partition] = self._buf[upto - 1].offset + 1

    async def _refill(self) -> bool:
        if not self._started:
            await self._ensure_started()
        self._note(len(self._buf))  # asking for more: the previous list is processed
        self._buf, self._i, self._buf_reader = [], 0, None
        while not self._closed:
            try:
                item = await self._receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return False
            if isinstance(item, BaseException):
                raise item
            p, token, records = item
            r = self._readers.get(p)
            if r is None or r.token is not token:
                continue  # read before a revocation: another member has (or will have) them
            self._buf, self._buf_reader = records, r
            return True
        return False

    # -- offsets -------------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit every record handed out so far (each partition's next offset).

        Raises:
            CommitRefusedError: this member is no longer a member (its session expired) or no
                longer owns a partition it read: another member reads it now.
        """
        self._note(self._i)
        await self._commit(self._consumed, raise_refused=True)

    async def flush(self) -> None:
        """The same as ``commit()`` (for the interface of ``Consumer``)."""
        await self.commit()

    async def _commit(self, positions: dict[int, int], raise_refused: bool = False) -> None:
        async with self._commit_lock:
            todo = {p: o for p, o in positions.items() if self._stored.get(p) != o}
            if not todo:
                return
            req = g.CommitOffsetsRequest(self.group, self.member_id, self.generation, self.topic,
                                         [g.GroupOffset(p, o) for p, o in sorted(todo.items())])
            resp = await group_call(self._fl, req)
            if resp.error:
                err = (CommitRefusedError if resp.error == GroupError.UNKNOWN_MEMBER
                       else GroupRequestError)(resp.error, resp.message)
                if raise_refused or not isinstance(err, CommitRefusedError):
                    raise err
                log.warning("group %s: commit refused: %s", self.group, err)
                return
            refused = []
            for res in resp.results:
                if res.error:
                    refused.append(CommitRefusedError(res.error, res.message))
                else:
                    self._stored[res.partition] = todo[res.partition]
            if refused:
                if raise_refused:
                    raise refused[0]
                log.warning("group %s: commit refused: %s", self.group, refused[0])



# ------------------------------------------------------------------------------ administration


def _check(resp: Any) -> Any:
    if resp.error:
        raise GroupRequestError(resp.error, resp.message)
    return resp


async def describe_groups(fl: Any, group: str | None = None) -> list[g.GroupInfo]:
    """Every group (or one): its topic, generation, members with their partitions, and its
    committed offsets.

    Raises:
        GroupRequestError: GROUP_NOT_FOUND for a named group that does not exist.
    """
    return _check(await group_call(fl, g.DescribeGroupsRequest(group))).groups


async def delete_group(fl: Any, group: str) -> None:
    """Forget a group and its committed offsets. Refused (GROUP_NOT_EMPTY) while it has members."""
    _check(await group_call(fl, g.DeleteGroupRequest(group)))


async def set_group_offsets(fl: Any, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Set the group's committed offsets (the next offset each partition's new member reads).
    Refused (GROUP_NOT_EMPTY) while the group has members."""
    _check(await group_call(fl, g.SetOffsetsRequest(
        group, topic, [g.GroupOffset(p, o) for p, o in sorted(offsets.items())])))


async def offset_for_time(fl: Any, topic: str, partition: int, timestamp_ms: int) -> int:
    """The first offset of the partition whose record time is at or after ``timestamp_ms``
    (the HW when there is none): the log is read from its start with classic Fetch."""
    from fluvial.client.consumer import fetch_partition_offsets
    from fluvial.protocol.record import decode_record_set
    from fluvial.protocol.spu_api import FetchableTopic, FetchPartition, FetchRequest, Isolation

    entry = await fetch_partition_offsets(fl, topic, partition)
    pos, hw = entry.start_offset, entry.last_stable_offset
    while pos < hw:
        _, conn = await fl.leader_connection(topic, partition)
        req = FetchRequest(0, 0, 1 << 20, Isolation.ReadCommitted, [FetchableTopic(
            topic, [FetchPartition(partition, -1, pos, 0, 1 << 20)])], [])
        resp = await conn.call(req, timeout=fl.request_timeout)
        part = resp.topics[0].partitions[0]
        if not part.error_code.ok:
            raise part.error_code.exception()
        records = decode_record_set(part.records) if part.records else []
        if not records:
            break
        for rec in records:
            if rec.offset >= pos and rec.timestamp >= timestamp_ms:
                return rec.offset
        pos = records[-1].offset + 1
    return hw
