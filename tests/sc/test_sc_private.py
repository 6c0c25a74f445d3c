"""The SC's private API against an in-process SC, with scripted SPUs speaking the protocol:
registration (lease, a new epoch for a leader that registers again), ISR versions, bad reports
and failed metadata saves."""

from __future__ import annotations

import errno
from contextlib import asynccontextmanager

import trio

from fluvial.errors import ConnectionLost, ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.sc.backend import FileBackend
from fluvial.sc.server import ScConfig, serve_sc
from harness.client import connects

HEARTBEAT = 5.0


class ScriptedSpu:
    """One registered private connection and its assignment stream. ``latest`` is the last push;
    as leader it reports every assignment it leads (ISR and version as assigned) unless
    ``auto_report`` is off."""

    def __init__(self, spu_id: int, conn, register: ia.RegisterSpuResponse):
        self.spu_id, self.conn, self.register = spu_id, conn, register
        self.latest: ia.WatchReplicasResponse | None = None
        self.pushed = trio.Event()
        self.auto_report = True

    def assignment(self, topic: str, partition: int = 0) -> ia.ReplicaAssignment | None:
        return next((a for a in (self.latest.replicas if self.latest else [])
                     if (a.topic, a.partition) == (topic, partition)), None)

    async def report(self, reports: list[ia.ReplicaReport]) -> ia.ReportReplicasResponse:
        return await self.conn.call(ia.ReportReplicasRequest(self.spu_id, reports))

    def leader_report(self, a: ia.ReplicaAssignment, **kw) -> ia.ReplicaReport:
        fields = dict(isr=list(a.isr), isr_version=a.isr_version, error=None)
        fields.update(kw)
        return ia.ReplicaReport(a.topic, a.partition, a.leader_epoch, a.leader == self.spu_id, 0, 0, 0, 0,
                                fields["isr"], [], fields["error"], fields["isr_version"])

    async def wait_assignment(self, topic: str, predicate=lambda a: True) -> ia.ReplicaAssignment:
        """The first pushed assignment of ``topic``/0 that satisfies ``predicate``."""
        with trio.fail_after(10):
            while (a := self.assignment(topic)) is None or not predicate(a):
                await self.pushed.wait()
        return a

    async def run(self, stream) -> None:
        """Until the stream ends; the SC hangs up on a connection replaced by a new one."""
        try:
            async for push in stream:
                self.latest = push
                self.pushed.set()
                self.pushed = trio.Event()
                led = [self.leader_report(a) for a in push.replicas if a.leader == self.spu_id]
                if self.auto_report and led:
                    await self.report(led)
        except ConnectionLost:
            pass


@asynccontextmanager
async def scripted_spu(private_port: int, spu_id: int):
    async with open_connection("127.0.0.1", private_port) as conn:
        await conn.handshake()
        resp = await conn.call(ia.RegisterSpuRequest(spu_id, "127.0.0.1", 9000 + spu_id,
                                                     "127.0.0.1", 9100 + spu_id))
        spu = ScriptedSpu(spu_id, conn, resp)
        if resp.error_code.ok:
            async with conn.open_stream(ia.WatchReplicasRequest(spu_id)) as stream:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(spu.run, stream)
                    yield spu
                    nursery.cancel_scope.cancel()
        else:
            yield spu


@asynccontextmanager
async def sc_server(tmp_path):
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(serve_sc, ScConfig(data_dir=tmp_path, public_port=0, private_port=0,
                                                       heartbeat_timeout_seconds=HEARTBEAT))
        async with open_connection("127.0.0.1", ports[0]) as admin:
            await admin.handshake()
            yield ports[1], admin
        nursery.cancel_scope.cancel()


def assigned(replicas: list[int]) -> so.TopicSpec:
    return so.TopicSpec(so.AssignedReplicas([so.PartitionMap(0, replicas)]))


async def test_registration_grants_a_lease_below_the_heartbeat_timeout(tmp_path):
    with trio.fail_after(30):
        async with sc_server(tmp_path) as (private, _):
            async with scripted_spu(private, 1) as spu:
                assert spu.register.error_code.ok
                assert spu.register.lease_ms == int(HEARTBEAT * 800)


async def test_a_leader_registering_again_on_a_new_connection_gets_a_new_epoch(tmp_path):
    with trio.fail_after(30):
        async with sc_server(tmp_path) as (private, admin):
            async with scripted_spu(private, 1) as one, scripted_spu(private, 2) as two:
                assert (await admin.call(sa.ObjectApiCreateRequest.of("t", assigned([1, 2])))).error_code.ok
                first = await one.wait_assignment("t")
                assert first.leader == 1
                # SPU 1 restarted; its old connection is not closed yet
                async with scripted_spu(private, 1) as again:
                    await two.wait_assignment("t", lambda a: a.leader_epoch > first.leader_epoch)
                    a = await again.wait_assignment("t")
                    assert (a.leader, a.leader_epoch) == (1, first.leader_epoch + 1)


async def test_a_stale_isr_report_does_not_re_add_a_failed_spu(tmp_path):
    with trio.fail_after(30):
        async with sc_server(tmp_path) as (private, admin):
            async with scripted_spu(private, 1) as one:
                async with scripted_spu(private, 2):
                    assert (await admin.call(sa.ObjectApiCreateRequest.of("t", assigned([1, 2])))).error_code.ok
                    stale = await one.wait_assignment("t")
                    assert stale.isr == [1, 2]
                    one.auto_report = False
                # SPU 2's connection closed: the SC drops it from the ISR
                await one.wait_assignment("t", lambda a: a.isr == [1])
                ok = await one.report([one.leader_report(stale)])  # built on the old ISR
                assert ok.error_code.ok
                # every push is the whole state: one that shows a later change shows this one
                one.auto_report = True
                assert (await admin.call(sa.ObjectApiCreateRequest.of("later", assigned([1])))).error_code.ok
                await one.wait_assignment("later")
                current = one.assignment("t")
                assert current.isr == [1] and current.isr_version == stale.isr_version + 1


async def test_a_bad_report_is_skipped_and_the_link_stays(tmp_path):
    with trio.fail_after(30):
        async with sc_server(tmp_path) as (private, admin):
            async with scripted_spu(private, 1) as one:
                assert (await admin.call(sa.ObjectApiCreateRequest.of("t", assigned([1])))).error_code.ok
                a = await one.wait_assignment("t")
                bad = [ia.ReplicaReport("nope", 3, 1, True, 0, 0, 0, 0, [1], [], None, 0),
                       ia.ReplicaReport("t", 0, a.leader_epoch + 7, True, 0, 0, 0, 0, [1, 9], [9, 1], None, 0),
                       ia.ReplicaReport("t", 0, a.leader_epoch, True, 5, 5, 0, 0, [1, 9], [9, 1, 9], None, 99)]
                assert (await one.report(bad)).error_code.ok
                assert (await one.report([one.leader_report(a)])).error_code.ok  # still linked
                spus = await admin.call(sa.ObjectApiListRequest.of(so.SpuSpec))
                assert [m.status.resolution for m in spus.items] == [so.SpuStatusResolution.Online]


async def test_a_failed_save_answers_an_error_and_changes_nothing(tmp_path, monkeypatch):
    fail = [False]
    save = FileBackend.save

    def flaky_save(self, batch, changed=None):
        if fail[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        save(self, batch, changed)

    monkeypatch.setattr(FileBackend, "save", flaky_save)
    with trio.fail_after(30):
        async with sc_server(tmp_path) as (private, admin):
            async with scripted_spu(private, 1) as one, scripted_spu(private, 2):
                assert (await admin.call(sa.ObjectApiCreateRequest.of("t", assigned([1, 2])))).error_code.ok
                a = await one.wait_assignment("t")
                fail[0] = True
                status = await admin.call(sa.ObjectApiCreateRequest.of("u", assigned([1])))
                assert status.error_code.code == ErrorCode.StorageError
                assert "No space left" in status.error_message
                status = await admin.call(sa.ObjectApiDeleteRequest.of(so.TopicSpec, "t"))
                assert status.error_code.code == ErrorCode.StorageError
                resp = await one.report([one.leader_report(a, isr=[1])])  # an ISR change: not saved
                assert resp.error_code.code == ErrorCode.StorageError
                assert one.assignment("t") == a
                topics = await admin.call(sa.ObjectApiListRequest.of(so.TopicSpec))
                assert [m.name for m in topics.items] == ["t"]
                fail[0] = False
                assert (await one.report([one.leader_report(a, isr=[1])])).error_code.ok
                await one.wait_assignment("t", lambda a: a.isr == [1])
                assert (await admin.call(sa.ObjectApiCreateRequest.of("u", assigned([1])))).error_code.ok



async def test_a_plaintext_private_port_binds_loopback_unless_told_otherwise(tmp_path):
    """Public on 127.0.0.2 (another loopback address, standing in for an exposed one): the SC's
    plaintext private port stays on 127.0.0.1; an explicit private host is honoured."""
    for private_host, reachable, unreachable in ((None, "127.0.0.1", "127.0.0.2"),
                                                 ("127.0.0.2", "127.0.0.2", "127.0.0.1")):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                public, private = await nursery.start(serve_sc, ScConfig(
                    data_dir=tmp_path / str(private_host), host="127.0.0.2", public_port=0,
                    private_port=0, private_host=private_host))
                assert await connects("127.0.0.2", public)
                assert await connects(reachable, private)
                assert not await connects(unreachable, private)
                nursery.cancel_scope.cancel()
