"""The consumer-group coordinator: the SPU that leads ``consumer-offset``-0 serves the group keys.

Why there: it is where Kafka puts it (the leader of the group's ``__consumer_offsets``
partition), and the state then lives in replicated storage with no new machinery. Every change
of a group (a member joins, leaves or expires; a partition is granted or revoked) appends the
group's snapshot to ``consumer-offset``-0, and every commit appends one record per partition,
before the request is answered, and waits until the in-sync replicas hold it (the HW covers
it). A new leader of the partition replays the log (``load``) and carries on: members keep their
ids, partitions and generation, and each gets a fresh session.

Records (keys are JSON lists, so ``ConsumerOffsetStore`` ignores them, and these ignore its):

    ["group", name]                      -> Group.snapshot() as JSON; b"" deletes the group
    ["group-offset", name, topic, p]     -> {"offset": next offset, "time": seconds}; b"" deletes

The decisions are ``fluvial.metadata.group.Group``'s; this module only serialises requests per
group (a lock), persists, wakes long-polling heartbeats, and expires sessions (a timer task per
coordinator, which ends when the leadership it was made for ends).
"""

from __future__ import annotations

import json
import logging
import time

import trio

from fluvial.metadata.group import Group, GroupError, GroupFailure, HeartbeatAnswer
from fluvial.protocol import group_api as g
from fluvial.protocol.record import encode_batch
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC
from fluvial.spu.consumer_offsets import replay
from fluvial.spu.partition import NotLeader, PartitionReplica
from fluvial.storage import errors as serr

log = logging.getLogger("fluvial.spu.groups")

PERSIST_TIMEOUT = 8.0  # seconds to wait for the in-sync replicas to hold a group record
MAX_WAIT_MS = 10_000  # the longest a heartbeat is held
EXPIRY_TICK = 0.05  # seconds between session checks


def _key(*parts) -> bytes:
    return json.dumps(list(parts), separators=(",", ":")).encode()


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class GroupCoordinator:
    """The groups of one leadership of ``consumer-offset``-0."""

    def __init__(self, replica: PartitionReplica):
        self.replica = replica
        self.leadership = replica.leader_state
        self.groups: dict[str, Group] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._changed: dict[str, trio.Event] = {}

    @property
    def current(self) -> bool:
        r = self.replica
        return not r.closed and r.is_leader and r.leader_state is self.leadership

    def load(self, now: float) -> None:
        for key, value in replay(self.replica):
            self._apply(key, value, now)

    def _apply(self, key: bytes | None, value: bytes, now: float) -> None:
        try:
            k = json.loads(key) if key else None
            if not isinstance(k, list) or not k:
                return
            if k[0] == "group" and len(k) == 2:
                name = str(k[1])
                if not value:
                    self.groups.pop(name, None)
                else:
                    self.group(name).restore(json.loads(value), now)
            elif k[0] == "group-offset" and len(k) == 4:
                name, topic, p = str(k[1]), str(k[2]), int(k[3])
                if value:
                    self.group(name).offsets[(topic, p)] = int(json.loads(value)["offset"])
                elif name in self.groups:
                    self.groups[name].offsets.pop((topic, p), None)
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not ours (a consumer-id offset) or odd: never fail a load over one record

    def group(self, name: str) -> Group:
        grp = self.groups.get(name)
        if grp is None:
            grp = self.groups[name] = Group(name)
        return grp

    def lock(self, name: str) -> trio.Lock:
        return self._locks.setdefault(name, trio.Lock())

    def changed(self, name: str) -> trio.Event:
        return self._changed.setdefault(name, trio.Event())

    def notify(self, name: str) -> None:
        ev = self._changed.pop(name, None)
        if ev is not None:
            ev.set()

    async def persist(self, records: list[tuple[bytes, bytes]]) -> None:
        """Append and wait until the in-sync replicas hold the records.

        Raises:
            GroupFailure: NOT_COORDINATOR (leadership lost) or STORAGE.
        """
        if not records:
            return
        try:
            _, leo = await self.replica.append(encode_batch(records))
            with trio.fail_after(PERSIST_TIMEOUT):
                await self.replica.wait_hw(leo)
        except NotLeader as e:
            raise GroupFailure(GroupError.NOT_COORDINATOR, str(e)) from None
        except (serr.StorageError, trio.TooSlowError) as e:
            raise GroupFailure(GroupError.STORAGE, f"group state not stored: {e!r}") from None
        if not self.current:
            raise GroupFailure(GroupError.NOT_COORDINATOR, "the coordinator moved")

    def snapshot_record(self, grp: Group) -> tuple[bytes, bytes]:
        return _key("group", grp.name), _json(grp.snapshot())

    async def expire_forever(self) -> None:
        """Drop members whose session ran out, while this leadership lasts."""
        while self.current:
            now = trio.current_time()
            for name, grp in list(self.groups.items()):
                deadline = grp.next_deadline()
                if deadline is None or deadline >= now:
                    continue
                async with self.lock(name):
                    gone = grp.expire(trio.current_time())
                    if gone:
                        log.info("group %s: session expired for %s (generation %d)", name, gone,
                                 grp.generation)
                        try:
                            await self.persist([self.snapshot_record(grp)])
                        except GroupFailure as e:
                            log.warning("group %s: %s", name, e)
                if gone:
                    self.notify(name)
            await trio.sleep(EXPIRY_TICK)


def coordinator(ctx) -> GroupCoordinator | None:
    """The coordinator of this SPU's current leadership of ``consumer-offset``-0, made (and its
    log replayed) on first use after the leadership began; None when this SPU does not lead it."""
    r = ctx.replicas.get((CONSUMER_OFFSET_TOPIC, 0))
    if r is None or not r.is_leader or r.closed:
        return None
    c = getattr(ctx, "groups", None)
    if c is None or c.replica is not r or c.leadership is not r.leader_state:
        c = GroupCoordinator(r)
        c.load(trio.current_time())
        ctx.groups = c
        ctx.nursery.start_soon(c.expire_forever)
    return c


def _fail(resp_cls, code: GroupError, message: str, **fields):
    return resp_cls(error=int(code), message=message, **fields)


def _wrap(resp_cls, **defaults):
    """Turn a GroupFailure, or a missing coordinator, into the response's error fields."""
    def deco(fn):
        async def handler(ctx, conn, header, req):
            c = coordinator(ctx)
            if c is None:
                return _fail(resp_cls, GroupError.NOT_COORDINATOR,
                             f"SPU {ctx.spu_id} does not lead {CONSUMER_OFFSET_TOPIC}-0", **defaults)
            try:
                return await fn(c, conn, req)
            except GroupFailure as e:
                return _fail(resp_cls, e.code, str(e), **defaults)
        handler.__name__ = fn.__name__
        return handler
    return deco


@_wrap(g.JoinGroupResponse, generation=-1)
async def handle_join_group(c: GroupCoordinator, conn, req: g.JoinGroupRequest) -> g.JoinGroupResponse:
    async with c.lock(req.group):
        grp = c.group(req.group)
        before = grp.snapshot()
        grp.join(req.member_id, req.client_id, req.host or str(conn.peer), req.topic, req.partitions,
                 req.session_timeout_ms, req.start, trio.current_time())
        if grp.snapshot() != before:
            log.info("group %s: %s joined (generation %d)", req.group, req.member_id, grp.generation)
            await c.persist([c.snapshot_record(grp)])
    c.notify(req.group)
    return g.JoinGroupResponse(0, "", grp.generation)


@_wrap(g.HeartbeatResponse, generation=-1, assigned=[], start="", offsets=[])
async def handle_heartbeat(c: GroupCoordinator, conn, req: g.HeartbeatRequest) -> g.HeartbeatResponse:
    grp = c.groups.get(req.group)
    if grp is None:
        raise GroupFailure(GroupError.UNKNOWN_MEMBER, f"no group {req.group!r}; rejoin")
    if not grp.pending(req.member_id, req.owned):
        changed = c.changed(req.group)
        with trio.move_on_after(min(req.wait_ms, MAX_WAIT_MS) / 1000):
            await changed.wait()
    async with c.lock(req.group):
        grp = c.groups.get(req.group)
        if grp is None:
            raise GroupFailure(GroupError.UNKNOWN_MEMBER, f"no group {req.group!r}; rejoin")
        before = dict(grp.owners)
        ans: HeartbeatAnswer = grp.heartbeat(req.member_id, req.owned, trio.current_time())
        moved = grp.owners != before
        if moved:
            try:
                await c.persist([c.snapshot_record(grp)])
            except GroupFailure:
                grp.owners = before  # nothing is granted or revoked that the log does not hold
                raise
    if moved:
        c.notify(req.group)
    return g.HeartbeatResponse(0, "", ans.generation, ans.assigned, grp.start,
                               [g.GroupOffset(p, o) for p, o in sorted(ans.offsets.items())])


@_wrap(g.LeaveGroupResponse)
async def handle_leave_group(c: GroupCoordinator, conn, req: g.LeaveGroupRequest) -> g.LeaveGroupResponse:
    grp = c.groups.get(req.group)
    if grp is None:
        raise GroupFailure(GroupError.GROUP_NOT_FOUND, f"no group {req.group!r}")
    async with c.lock(req.group):
        if grp.leave(req.member_id):
            log.info("group %s: %s left (generation %d)", req.group, req.member_id, grp.generation)
            await c.persist([c.snapshot_record(grp)])
    c.notify(req.group)
    return g.LeaveGroupResponse(0, "")


@_wrap(g.CommitOffsetsResponse, results=[])
async def handle_commit_offsets(c: GroupCoordinator, conn, req: g.CommitOffsetsRequest
                                ) -> g.CommitOffsetsResponse:
    grp = c.groups.get(req.group)
    if grp is None:
        raise GroupFailure(GroupError.UNKNOWN_MEMBER, f"no group {req.group!r}; rejoin")
    results, records, accepted = [], [], {}
    now = int(time.time())
    async with c.lock(req.group):
        for o in req.offsets:
            try:
                if o.offset < 0:
                    raise GroupFailure(GroupError.INVALID_REQUEST, f"offset {o.offset}")
                grp.check_commit(req.member_id, req.generation, req.topic, o.partition)
            except GroupFailure as e:
                if e.code == GroupError.UNKNOWN_MEMBER:
                    raise
                results.append(g.PartitionResult(o.partition, int(e.code), str(e)))
                continue
            records.append((_key("group-offset", grp.name, req.topic, o.partition),
                            _json({"offset": o.offset, "time": now})))
            accepted[o.partition] = o.offset
            results.append(g.PartitionResult(o.partition, 0, ""))
        await c.persist(records)
        for p, off in accepted.items():
            grp.offsets[(req.topic, p)] = off
    return g.CommitOffsetsResponse(0, "", results)


@_wrap(g.DescribeGroupsResponse, groups=[])
async def handle_describe_groups(c: GroupCoordinator, conn, req: g.DescribeGroupsRequest
                                 ) -> g.DescribeGroupsResponse:
    if req.group is not None and req.group not in c.groups:
        raise GroupFailure(GroupError.GROUP_NOT_FOUND, f"no group {req.group!r}")
    names = [req.group] if req.group is not None else sorted(c.groups)
    out = []
    for name in names:
        grp = c.groups[name]
        members = [g.MemberInfo(m.member_id, m.client_id, m.host,
                                sorted(p for p, o in grp.owners.items() if o == m.member_id))
                   for m in sorted(grp.members.values(), key=lambda m: m.member_id)]
        offsets = [g.CommittedOffset(t, p, o) for (t, p), o in sorted(grp.offsets.items())]
        out.append(g.GroupInfo(name, grp.topic, grp.generation, members, offsets))
    return g.DescribeGroupsResponse(0, "", out)


@_wrap(g.DeleteGroupResponse)
async def handle_delete_group(c: GroupCoordinator, conn, req: g.DeleteGroupRequest) -> g.DeleteGroupResponse:
    async with c.lock(req.group):
        grp = c.groups.get(req.group)
        if grp is None:
            raise GroupFailure(GroupError.GROUP_NOT_FOUND, f"no group {req.group!r}")
        if grp.members:
            raise GroupFailure(GroupError.GROUP_NOT_EMPTY,
                               f"group {req.group!r} has {len(grp.members)} members; stop them first")
        records = [(_key("group-offset", grp.name, t, p), b"") for (t, p) in sorted(grp.offsets)]
        await c.persist(records + [(_key("group", grp.name), b"")])
        del c.groups[req.group]
    return g.DeleteGroupResponse(0, "")


@_wrap(g.SetOffsetsResponse)
async def handle_set_offsets(c: GroupCoordinator, conn, req: g.SetOffsetsRequest) -> g.SetOffsetsResponse:
    async with c.lock(req.group):
        grp = c.groups.get(req.group) or Group(req.group)
        offsets = {o.partition: o.offset for o in req.offsets}
        trial = Group(grp.name, members=grp.members)
        trial.set_offsets(req.topic, offsets)  # refuses while there are members, or bad offsets
        now = int(time.time())
        await c.persist([(_key("group-offset", grp.name, req.topic, p), _json({"offset": o, "time": now}))
                         for p, o in sorted(offsets.items())])
        c.groups.setdefault(req.group, grp).set_offsets(req.topic, offsets)
    return g.SetOffsetsResponse(0, "")


GROUP_HANDLERS = {
    g.GroupApiKey.JoinGroup: handle_join_group,
    g.GroupApiKey.Heartbeat: handle_heartbeat,
    g.GroupApiKey.LeaveGroup: handle_leave_group,
    g.GroupApiKey.CommitOffsets: handle_commit_offsets,
    g.GroupApiKey.DescribeGroups: handle_describe_groups,
    g.GroupApiKey.DeleteGroup: handle_delete_group,
    g.GroupApiKey.SetOffsets: handle_set_offsets,
}
