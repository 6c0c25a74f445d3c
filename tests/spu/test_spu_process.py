"""The SPU process against a scripted SC: topic incarnations, orphan directories, one failing
replica, the leader lease, where the private port binds.

The SC here is a small fake on 127.0.0.1 (port 0) that the test drives: it pushes exactly the
assignments the test sets, grants the lease the test chooses, and answers reports when and how the
test says. The SPU under test is the real ``serve_spu`` in the test's trio run.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial

import trio

from fluvial.errors import OK, Error, ErrorCode
from fluvial.net.dispatch import ApiRegistry, RequestLimits, serve_api
from fluvial.net.multiplexer import open_connection
from fluvial.net.server import listener_port, serve_tcp
from fluvial.cli.run import exposed_plaintext_warning
from fluvial.access import is_loopback, private_bind_host
from fluvial.protocol import internal_api as ia
from fluvial.protocol import spu_api as api
from fluvial.protocol.api import encode_response
from fluvial.protocol.record import decode_record_set, encode_batch
from fluvial.storage.checkpoint import SHARED_HW_CHECKPOINT
from fluvial.storage.errors import StorageIOError
from fluvial.storage.replica import Replica
from fluvial.spu.context import (
    INCARNATION_FILE, is_other_incarnation, parse_replica_dir, prepare_replica_dir,
)
from fluvial.spu.server import SpuConfig, serve_spu
from harness.client import connects

SPU = 5001


def assignment(topic, topic_id, epoch=1, isr_version=0):
    """``topic``/0 led by the SPU under test (a new leadership needs a new ``epoch``)."""
    return ia.ReplicaAssignment(topic, 0, SPU, epoch, [SPU], [SPU], ia.ReplicaSettings(), topic_id,
                                isr_version)


class FakeSc:
    """The SC side of the private protocol, scripted by the test."""

    def __init__(self, lease_ms: int = 0):
        self.lease_ms = lease_ms
        self.assignments: list[ia.ReplicaAssignment] = []
        self.epoch = 0
        self._changed = trio.Event()
        self.registrations = 0
        self.reports: list[ia.ReportReplicasRequest] = []
        self.state: dict[tuple[str, int], ia.ReplicaReport] = {}  # every report folded in
        self.report_arrived = trio.Event()
        self.answer_delay = 0.0
        self.answering = True
        self.answer = OK  # the error code reports are answered with
        self.last_answered_received_at: float | None = None
        self.port = 0

    def push(self, assignments) -> None:
        self.assignments = list(assignments)
        self.epoch += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_report(self, predicate) -> ia.ReportReplicasRequest:
        """The first state (from now on or the current one) that satisfies ``predicate``: the
        SPU's reports are deltas (fluvial.spu.reports), so ``predicate`` sees every replica's
        last reported entry, folded in as the SC does, as one full report."""
        while True:
            if self.reports:
                state = ia.ReportReplicasRequest(self.reports[-1].spu_id,
                                                 [r for _, r in sorted(self.state.items())])
                if predicate(state):
                    return state
            self.report_arrived = trio.Event()
            await self.report_arrived.wait()

    def handler(self):
        """The ``serve_tcp`` handler of the fake SC's private port."""
        handlers = {ia.InternalScApiKey.RegisterSpu: self.register,
                    ia.InternalScApiKey.WatchReplicas: self.watch,
                    ia.InternalScApiKey.ReportReplicas: self.report,
                    ia.InternalScApiKey.LookupSmartModule: self.lookup_smartmodule}
        return serve_api(ApiRegistry(ia.INTERNAL_SC_REQUESTS), handlers, RequestLimits(1 << 24), self,
                         name="fake SC")

    async def lookup_smartmodule(self, _, conn, header, req):
        return ia.LookupSmartModuleResponse(Error(ErrorCode.SmartModuleNotFound, (req.name,)), b"")

    async def register(self, _, conn, header, req):
        self.registrations += 1
        return ia.RegisterSpuResponse(OK, None, self.lease_ms)

    async def watch(self, _, conn, header, req):
        while True:
            changed = self._changed
            await conn.send(encode_response(ia.WatchReplicasResponse(self.epoch, self.assignments, [], -1),
                                            header.correlation_id, header.api_version))
            await changed.wait()

    async def report(self, _, conn, header, req):
        received_at = trio.current_time()
        self.reports.append(req)
        self.state.update({(r.topic, r.partition): r for r in req.replicas})
        self.report_arrived.set()
        if not self.answering:
            await trio.sleep_forever()
        await trio.sleep(self.answer_delay)
        if self.answer.ok:
            self.last_answered_received_at = received_at
        return ia.ReportReplicasResponse(self.answer)


@asynccontextmanager
async def fake_sc(**kw):
    sc = FakeSc(**kw)
    async with trio.open_nursery() as n:
        listener = await n.start(serve_tcp, sc.handler(), "127.0.0.1", 0)
        sc.port = listener_port(listener)
        yield sc
        n.cancel_scope.cancel()


@asynccontextmanager
async def running_spu(sc: FakeSc, data_dir, **kw):
    cfg = SpuConfig(spu_id=SPU, data_dir=data_dir, sc_port=sc.port, heartbeat_seconds=0.05, **kw)
    async with trio.open_nursery() as n:
        cfg.public_port, cfg.private_port = await n.start(partial(serve_spu, cfg))
        yield cfg
        n.cancel_scope.cancel()


async def produce(cfg, topic, value, host="127.0.0.1"):
    async with open_connection(host, cfg.public_port) as c:
        await c.handshake()
        resp = await c.call(api.ProduceRequest(None, api.Isolation.ReadUncommitted, 5000, [
            api.TopicProduceData(topic, [api.PartitionProduceData(0, encode_batch([value]))])]), timeout=10)
        return resp.responses[0].partitions[0]


async def records(cfg, topic) -> list[bytes]:
    """Every record of ``topic``/0 up to its LEO (empty when the log is)."""
    async with open_connection("127.0.0.1", cfg.public_port) as c:
        await c.handshake()
        o = await c.call(api.FetchOffsetsRequest([api.FetchOffsetTopic(topic, [api.FetchOffsetPartition(0)])]))
        p = o.topics[0].partitions[0]
        assert p.error_code.ok, p
        if p.last_stable_offset == p.start_offset:
            return []
        out = []
        async with c.open_stream(api.StreamFetchRequest(topic, 0, p.start_offset)) as stream:
            async for msg in stream:
                out += [r.value for r in decode_record_set(msg.partition.records)]
                if len(out) >= p.last_stable_offset - p.start_offset:
                    return out


# --------------------------------------------------------------------------- incarnations


async def test_a_deleted_topics_leftover_directory_never_comes_back(tmp_path):
    """Delete and re-create a topic while its SPU is down: the new topic starts empty (the old
    records would otherwise be served to whoever may read the new topic)."""
    with trio.fail_after(30):
        async with fake_sc() as sc:
            sc.push([assignment("t", topic_id=11)])
            async with running_spu(sc, tmp_path) as cfg:
                assert (await produce(cfg, "t", b"old secret")).error_code.ok
                assert await records(cfg, "t") == [b"old secret"]
            sc.push([assignment("t", topic_id=22)])  # deleted and re-created while the SPU was away
            async with running_spu(sc, tmp_path) as cfg:
                assert await records(cfg, "t") == []
                part = await produce(cfg, "t", b"new")
                assert part.error_code.ok and part.base_offset == 0
                assert await records(cfg, "t") == [b"new"]
            assert (tmp_path / "t-0" / INCARNATION_FILE).read_text().strip() == "22"


async def test_a_topic_re_created_between_two_pushes_starts_empty(tmp_path):
    with trio.fail_after(30):
        async with fake_sc() as sc:
            sc.push([assignment("t", topic_id=11)])
            async with running_spu(sc, tmp_path) as cfg:
                assert (await produce(cfg, "t", b"old")).error_code.ok
                await sc.wait_report(lambda rep: rep.replicas and rep.replicas[0].leo == 1)
                sc.push([assignment("t", topic_id=22)])
                await sc.wait_report(lambda rep: rep.replicas and rep.replicas[0].leo == 0
                                     and rep.replicas[0].is_leader)
                assert await records(cfg, "t") == []


async def test_a_restart_keeps_the_same_incarnation(tmp_path):
    with trio.fail_after(30):
        async with fake_sc() as sc:
            sc.push([assignment("t", topic_id=11)])
            async with running_spu(sc, tmp_path) as cfg:
                assert (await produce(cfg, "t", b"kept")).error_code.ok
            sc.push([assignment("t", topic_id=11, epoch=2)])
            async with running_spu(sc, tmp_path) as cfg:
                assert await records(cfg, "t") == [b"kept"]


async def test_orphan_replica_directories_go_after_the_first_push(tmp_path):
    with trio.fail_after(30):
        async with fake_sc() as sc:
            sc.push([assignment("keep", 1), assignment("gone", 2), assignment("my-topic-x", 3)])
            async with running_spu(sc, tmp_path) as cfg:
                for t in ("keep", "gone", "my-topic-x"):
                    assert (await produce(cfg, t, b"v")).error_code.ok
            (tmp_path / "notes").mkdir()  # not a replica directory: left alone
            sc.push([assignment("keep", 1, epoch=2)])  # the others were deleted while the SPU was away
            async with running_spu(sc, tmp_path) as cfg:
                assert sorted(p.name for p in tmp_path.iterdir()) == ["keep-0", "notes", SHARED_HW_CHECKPOINT]
                assert await records(cfg, "keep") == [b"v"]


def test_incarnation_rules():
    assert not is_other_incarnation(None, True, 0)  # an SC without incarnations: keep
    assert not is_other_incarnation(7, True, 0)
    assert not is_other_incarnation(7, True, 7)
    assert is_other_incarnation(7, True, 8)
    assert is_other_incarnation(None, True, 8)  # files but no incarnation: not trusted
    assert not is_other_incarnation(None, False, 8)  # nothing there yet
    assert parse_replica_dir("my-topic-12") == ("my-topic", 12)
    assert parse_replica_dir("notes") is None
    assert parse_replica_dir("t-") is None and parse_replica_dir("-1") is None
    assert parse_replica_dir("t-01") is None


def test_a_directory_from_before_incarnations_is_kept_only_for_an_sc_without_them(tmp_path):
    d = tmp_path / "t-0"
    d.mkdir()
    (d / "00000000000000000000.log").write_bytes(b"x" * 10)
    assert not prepare_replica_dir(tmp_path, "t", 0, 0)
    assert (d / "00000000000000000000.log").exists() and not (d / INCARNATION_FILE).exists()
    assert prepare_replica_dir(tmp_path, "t", 0, 5)
    assert sorted(p.name for p in d.iterdir()) == [INCARNATION_FILE]
    assert not prepare_replica_dir(tmp_path, "t", 0, 5)


# ------------------------------------------------------------------ one failing replica


async def test_one_replica_that_cannot_be_opened_does_not_take_the_spu_down(tmp_path):
    with trio.fail_after(30):
        (tmp_path / "bad-0").write_text("a file where the replica directory should be")
        async with fake_sc() as sc:
            sc.push([assignment("bad", 0), assignment("good", 0)])
            async with running_spu(sc, tmp_path) as cfg:
                rep = await sc.wait_report(lambda r: any(x.topic == "bad" for x in r.replicas))
                bad = next(x for x in rep.replicas if x.topic == "bad")
                assert bad.error and not bad.is_leader
                assert (await produce(cfg, "good", b"v")).error_code.ok
                sc.push([assignment("bad", 0), assignment("good", 0), assignment("later", 0)])
                await sc.wait_report(lambda r: any(x.topic == "later" and x.is_leader for x in r.replicas))
                assert (await produce(cfg, "later", b"v")).error_code.ok
                assert sc.registrations == 1  # the SC link never dropped


async def test_reports_carry_the_assignments_isr_version(tmp_path):
    with trio.fail_after(30):
        async with fake_sc() as sc:
            sc.push([assignment("t", 1, isr_version=7)])
            async with running_spu(sc, tmp_path):
                rep = await sc.wait_report(lambda r: r.replicas and r.replicas[0].isr_version == 7)
                assert rep.replicas[0].error is None


async def test_a_corrupt_batch_in_a_sealed_segment_is_found_and_reported(tmp_path):
    """Opening a replica does not CRC-check its sealed segments; the background verification
    finds a bad batch there and the replica reports it (the SC then moves its leadership)."""
    settings = ia.ReplicaSettings(segment_max_bytes=1024)
    with trio.fail_after(30):
        async with fake_sc() as sc:
            sc.push([replace(assignment("t", 1), settings=settings)])
            async with running_spu(sc, tmp_path) as cfg:
                for _ in range(8):
                    assert (await produce(cfg, "t", bytes(300))).error_code.ok
            assert len(list((tmp_path / "t-0").glob("*.log"))) > 2  # the first one is sealed
            with open(tmp_path / "t-0" / "00000000000000000000.log", "r+b") as f:
                f.seek(200)  # a bit flips on the disk under a sealed batch
                byte = f.read(1)
                f.seek(200)
                f.write(bytes([byte[0] ^ 0x01]))
            sc.push([replace(assignment("t", 1, epoch=2), settings=settings)])
            async with running_spu(sc, tmp_path, checkpoint_seconds=0.02, verify_bytes_per_tick=256):
                rep = await sc.wait_report(lambda r: r.replicas[0].error is not None)
                assert "corrupt batch at offset 0" in rep.replicas[0].error


async def test_a_replica_whose_fsync_failed_reports_an_error(tmp_path, monkeypatch):
    with trio.fail_after(30):
        async with fake_sc() as sc:
            sc.push([assignment("t", 1)])
            async with running_spu(sc, tmp_path) as cfg:
                def failing_flush(self):
                    raise StorageIOError("fsync failed: EIO")

                monkeypatch.setattr(Replica, "flush", failing_flush)
                assert not (await produce(cfg, "t", b"v")).error_code.ok
                rep = await sc.wait_report(lambda r: r.replicas[0].error is not None)
                assert "fsync failed" in rep.replicas[0].error


# -------------------------------------------------------------------------------- lease


async def test_the_lease_is_renewed_by_answered_reports_and_runs_out_without_them(tmp_path):
    lease = 0.3
    with trio.fail_after(30):
        async with fake_sc(lease_ms=int(lease * 1000)) as sc:
            sc.push([assignment("t", 1)])
            async with running_spu(sc, tmp_path) as cfg:
                await sc.wait_report(lambda r: sc.last_answered_received_at is not None)
                # renewed by every answered report: acks go on for many lease lengths
                end = trio.current_time() + 4 * lease
                while trio.current_time() < end:
                    assert (await produce(cfg, "t", b"v")).error_code.ok
                sc.answering = False
                n = len(sc.reports)
                await sc.wait_report(lambda r: len(sc.reports) > n)  # reports go unanswered now
                # the last answered report was sent before the SC received it: past that plus
                # the lease, no produce is acknowledged
                cut = sc.last_answered_received_at
                await trio.sleep_until(cut + lease)
                part = await produce(cfg, "t", b"late")
                assert not part.error_code.ok, part


async def test_answers_slower_than_the_lease_never_make_it_valid(tmp_path):
    """The lease counts from when a report was sent: an answer that arrives after the lease it
    grants has run out grants nothing."""
    with trio.fail_after(30):
        async with fake_sc(lease_ms=200) as sc:
            sc.answer_delay = 0.3
            sc.push([assignment("t", 1)])
            async with running_spu(sc, tmp_path) as cfg:
                for _ in range(3):
                    n = len(sc.reports)
                    await sc.wait_report(lambda r: len(sc.reports) > n + 1)
                    part = await produce(cfg, "t", b"v")
                    assert not part.error_code.ok, part


async def test_reports_the_sc_refuses_renew_nothing(tmp_path):
    with trio.fail_after(30):
        async with fake_sc(lease_ms=10_000) as sc:
            sc.answer = Error.other("not now")
            sc.push([assignment("t", 1)])
            async with running_spu(sc, tmp_path) as cfg:
                await sc.wait_report(lambda r: len(sc.reports) > 2)
                part = await produce(cfg, "t", b"v")
                assert not part.error_code.ok, part


async def test_an_sc_that_grants_no_lease_leaves_leaders_acknowledging(tmp_path):
    with trio.fail_after(30):
        async with fake_sc(lease_ms=0) as sc:
            sc.answering = False
            sc.push([assignment("t", 1)])
            async with running_spu(sc, tmp_path) as cfg:
                assert (await produce(cfg, "t", b"v")).error_code.ok


# ------------------------------------------------------------------------- private port



async def test_a_plaintext_private_port_binds_loopback_unless_told_otherwise(tmp_path):
    """Public on 127.0.0.2 (another loopback address, standing in for an exposed one): the
    plaintext private port stays on 127.0.0.1; an explicit private host is honoured."""
    with trio.fail_after(30):
        async with fake_sc() as sc:
            async with running_spu(sc, tmp_path / "a", host="127.0.0.2") as cfg:
                assert await connects("127.0.0.2", cfg.public_port)
                assert await connects("127.0.0.1", cfg.private_port)
                assert not await connects("127.0.0.2", cfg.private_port)
            async with running_spu(sc, tmp_path / "b", host="127.0.0.2", private_host="127.0.0.2") as cfg:
                assert await connects("127.0.0.2", cfg.private_port)
                assert not await connects("127.0.0.1", cfg.private_port)


def test_where_private_listeners_bind():
    assert private_bind_host("0.0.0.0", None, tls=False) == "127.0.0.1"
    assert private_bind_host("0.0.0.0", None, tls=True) == "0.0.0.0"
    assert private_bind_host("0.0.0.0", "10.0.0.5", tls=False) == "10.0.0.5"
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("spu1.example")


def test_the_cli_warns_about_an_exposed_plaintext_private_port():
    assert "without TLS" in exposed_plaintext_warning("SPU 5001", "0.0.0.0", tls=False)
    assert exposed_plaintext_warning("SPU 5001", "0.0.0.0", tls=True) is None
    assert exposed_plaintext_warning("SC", "127.0.0.1", tls=False) is None
