"""Issue core-4: kill -9 failure tests against a real 3-SPU process cluster.

The promise: with ReadCommitted produce, an acknowledged record is never lost while one in-sync
replica survives, and replicas never diverge. Every test runs the workload of
``harness.workload`` (writers retrying unacknowledged sends, ReadCommitted consumers), delivers
its faults, heals the cluster, and runs ``check_history`` on the replicas' final logs read from
disk. See tests/chaos/conftest.py for the rules of the suite.

Issue safe-1: F1-F4 also run in power-loss mode (``[power-<mode>]``): every killed SPU loses what
it had not fsynced, so these variants fail when an fsync is missing or the HW counts unsynced
data. Each test uses one power-loss mode, the modes in turn, to keep the suite's time modest.
"""

from __future__ import annotations

import shutil

import pytest
import trio

from fluvial.protocol.spu_api import Isolation
from harness.client import ScAdmin, send_batch, wait_leader, wait_replica_caught_up, wait_until
from harness.disklogs import read_replica_log
from harness.history import make_id
from harness.processes import ProcessCluster
from harness.scenarios import heal_and_collect, kill_leader_round
from harness.workload import WorkloadConfig, open_workload

pytestmark = pytest.mark.slow

TOPIC = "chaos"
STEP_TIMEOUT = 45.0


def _kill_modes(power_mode: str):
    """Run a test with plain kill -9 and in power-loss mode ``power_mode``."""
    return pytest.mark.parametrize("cluster", ["kill-9", f"power-{power_mode}"], indirect=True)


def _assert_promise_kept(cluster: ProcessCluster, result) -> None:
    text = (f"{result.summary()}\n{cluster!r}; power cuts {cluster.power_cuts}\n"
            f"cluster home (logs/, data/): {cluster.home}")
    assert result.ok, text
    assert result.converged, text
    assert result.acknowledged > 0, text


async def _setup(cluster: ProcessCluster) -> tuple[ScAdmin, int]:
    admin = cluster.admin()
    await admin.create_topic(TOPIC, partitions=1, replication=3)
    leader = await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT)
    return admin, leader


async def _followers(admin: ScAdmin) -> list[int]:
    m = (await admin.partitions(TOPIC))[0]
    return [s for s in m.spec.replicas if s != m.spec.leader]


async def _wait_elected(admin: ScAdmin, old: int) -> int:
    """Until the SC has elected another leader than ``old`` (it may not have reported yet)."""
    async def elected():
        leader = (await admin.partitions(TOPIC))[0].spec.leader
        return leader if leader != old else None

    return await wait_until(elected, f"a leader other than {old}", STEP_TIMEOUT, interval=0.005)


@_kill_modes("cut")
async def test_f1_leader_kill_rounds_lose_nothing(cluster):
    """F1: kill -9 the leader under continuous ReadCommitted produce, 5 rounds (3 in power-loss
    mode), restarting the killed SPU between rounds."""
    count = 3 if cluster.power_loss else 5
    with trio.fail_after(180):
        admin, _ = await _setup(cluster)
        async with open_workload(admin, WorkloadConfig(TOPIC)) as w:
            rounds = [await kill_leader_round(cluster, admin, w, acks_before=10, acks_after=10,
                                              timeout=STEP_TIMEOUT) for _ in range(count)]
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    _assert_promise_kept(cluster, result)
    assert result.acknowledged >= count * 20 * w.config.batch_records
    assert len({r.killed for r in rounds}) >= 2, f"leadership never moved: {rounds}"
    assert all(r.failover_seconds < STEP_TIMEOUT for r in rounds)
    assert w.history.observed[0], "the ReadCommitted consumer saw nothing"


@_kill_modes("torn")
async def test_f2_writes_continue_at_two_of_three_and_stop_at_one(cluster):
    """F2: kill one follower, then the other: writes continue at 2 of 3; at 1 of 3 nothing is
    acknowledged; after heal nothing acknowledged is lost."""
    with trio.fail_after(180):
        admin, leader = await _setup(cluster)
        first, second = await _followers(admin)
        config = WorkloadConfig(TOPIC, produce_timeout_ms=1500)
        async with open_workload(admin, config) as w:
            await w.wait_acks(10, STEP_TIMEOUT)
            await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(first))
            await w.wait_acks(10, STEP_TIMEOUT)  # 2 of 3: still acknowledged
            killed_at = await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(second))
            # what the last follower held when it died (it fsyncs before it fetches again, so the
            # leader never counted more than this for it)
            snapshot = cluster.home / "snapshot"
            await trio.to_thread.run_sync(shutil.copytree, cluster.data_dir(second) / f"{TOPIC}-0",
                                          snapshot / f"{TOPIC}-0")
            # 1 of 3: every writer has its sends refused (timed out) a few times
            await w.wait_failed_sends(2 * config.writers_per_partition, STEP_TIMEOUT)
            acked_alone = w.history.acks_sent_after(killed_at)
            held = await trio.to_thread.run_sync(read_replica_log, snapshot, TOPIC, 0)
            follower_end = held[-1][0] + 1 if held else 0
            beyond = sorted(o for p, o in w.history.acked.values() if o >= follower_end)
            acked_count = len(w.history.acked)
            await trio.to_thread.run_sync(cluster.resume)
            await w.wait_acks(10, STEP_TIMEOUT)  # healed: writes go on
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    assert not acked_alone, (f"{len(acked_alone)} sends started after both followers died were "
                             f"acknowledged (leader {leader}); home {cluster.home}")
    assert not beyond, (f"records acknowledged at offsets {beyond[:10]} that the last follower "
                        f"({second}, LEO {follower_end}) never held; home {cluster.home}")
    assert acked_count > 0 and len(w.history.acked) > acked_count
    _assert_promise_kept(cluster, result)


@_kill_modes("reorder")
async def test_f3_old_leader_with_unacknowledged_suffix_rejoins(cluster):
    """F3 (a): the leader appends a suffix its followers never see, dies, and rejoins after a
    new leader wrote other records at the same offsets: it must truncate, not diverge."""
    with trio.fail_after(180):
        admin, leader = await _setup(cluster)
        followers = await _followers(admin)
        suffix = [make_id(0, 99, i) for i in range(20)]
        async with open_workload(admin, WorkloadConfig(TOPIC)) as w:
            await w.wait_acks(10, STEP_TIMEOUT)
            for f in followers:  # they stay in the ISR: the pause is far below the 2 s timeouts
                cluster.pause(cluster.spu_name(f))
            try:
                w.history.attempt(0, 99, suffix)
                resp = await send_batch(admin, leader, TOPIC, 0, suffix,
                                        isolation=Isolation.ReadUncommitted)
                assert resp.error_code.ok, resp.error_code
                killed_at = await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(leader))
            finally:
                for f in followers:
                    cluster.cont(cluster.spu_name(f))
            await w.wait_failover(0, killed_at, leader, STEP_TIMEOUT)
            # the new leader now writes other records where the old leader holds its suffix
            suffix_end = resp.base_offset + len(suffix)
            await w.wait_for(lambda: max(o for _, o in w.history.acked.values()) >= suffix_end,
                             "new records past the old leader's suffix", STEP_TIMEOUT)
            await trio.to_thread.run_sync(cluster.resume)
            target = 1 + max(o for _, o in w.history.acked.values())
            await wait_replica_caught_up(admin, TOPIC, 0, leader, target, STEP_TIMEOUT)
            await w.wait_acks(10, STEP_TIMEOUT)
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    _assert_promise_kept(cluster, result)
    kept = [o for o, v in read_replica_log(cluster.data_dir(leader), TOPIC, 0) if v in suffix]
    assert not kept, f"the old leader kept its unacknowledged suffix at {kept[:5]}"


@_kill_modes("cut")
async def test_f3_two_failovers_in_quick_succession(cluster):
    """F3 (b): kill the leader, and kill the new one as soon as the SC has elected it; the last
    replica leads; both dead replicas rejoin through two epochs."""
    with trio.fail_after(180):
        admin, first = await _setup(cluster)
        async with open_workload(admin, WorkloadConfig(TOPIC, produce_timeout_ms=1500)) as w:
            for _ in range(2):
                await w.wait_acks(10, STEP_TIMEOUT)
                leader = await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT)
                await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(leader))
                second = await _wait_elected(admin, leader)
                killed_at = await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(second))
                last = await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT, not_spu=second)
                assert last not in (leader, second)
                # alone, the last replica accepts nothing (min_isr 2) until another one returns
                await trio.to_thread.run_sync(cluster.resume)
                await w.wait_failover(0, killed_at, second, STEP_TIMEOUT)
                target = 1 + max(o for _, o in w.history.acked.values())
                for spu in (leader, second):
                    await wait_replica_caught_up(admin, TOPIC, 0, spu, target, STEP_TIMEOUT)
            await w.wait_acks(10, STEP_TIMEOUT)
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    _assert_promise_kept(cluster, result)


@_kill_modes("torn")
async def test_f4_whole_cluster_killed_mid_produce(cluster):
    """F4: kill -9 every member (SC included) under load, restart, lose nothing."""
    with trio.fail_after(180):
        admin, _ = await _setup(cluster)
        async with open_workload(admin, WorkloadConfig(TOPIC)) as w:
            await w.wait_acks(20, STEP_TIMEOUT)
            await trio.to_thread.run_sync(cluster.kill_all)
            acked_before = len(w.history.acked)
            await trio.to_thread.run_sync(cluster.resume)
            await w.wait_acks(20, STEP_TIMEOUT)
            assert len(w.history.acked) > acked_before
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    _assert_promise_kept(cluster, result)


@pytest.mark.parametrize("when", ["with-the-leader", "after-the-election", "before-the-leader"])
async def test_f7_sc_killed_during_elections(cluster, when):
    """F7: kill -9 the SC around a leader election: at the same moment as the leader, right after
    it elected a new leader (before that leader reported), or first (the leader dies while no SC
    runs). Restart both; nothing acknowledged is lost and the replicas agree."""
    with trio.fail_after(180):
        admin, _ = await _setup(cluster)
        async with open_workload(admin, WorkloadConfig(TOPIC, produce_timeout_ms=1500)) as w:
            await w.wait_acks(10, STEP_TIMEOUT)
            leader = await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT)
            name = cluster.spu_name(leader)
            if when == "before-the-leader":
                await trio.to_thread.run_sync(cluster.kill, "sc")
                await trio.to_thread.run_sync(cluster.kill, name)
            elif when == "with-the-leader":
                await trio.to_thread.run_sync(cluster.kill, name)
                await trio.to_thread.run_sync(cluster.kill, "sc")
            else:
                await trio.to_thread.run_sync(cluster.kill, name)
                await _wait_elected(admin, leader)
                await trio.to_thread.run_sync(cluster.kill, "sc")
            acked_before = len(w.history.acked)
            await trio.to_thread.run_sync(cluster.resume)
            await w.wait_acks(10, STEP_TIMEOUT)
            assert len(w.history.acked) > acked_before
            target = 1 + max(o for _, o in w.history.acked.values())
            await wait_replica_caught_up(admin, TOPIC, 0, leader, target, STEP_TIMEOUT)
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    _assert_promise_kept(cluster, result)


async def _stall_leader_with_pending_sends(cluster: ProcessCluster, leader: int,
                                           followers: list[int], w) -> None:
    """Leave sends waiting for the HW on ``leader`` and stop it (SIGSTOP): the followers are
    stopped first, so the leader appends batches nobody fetches; then the leader stops and the
    followers continue."""
    for f in followers:
        cluster.pause(cluster.spu_name(f))
    try:
        # the leader appends the writers' next batches but cannot commit them
        await w.wait_for(lambda: w.history.attempts and sum(w.history.attempts.values())
                         > len(w.history.acked) + w.config.batch_records,
                         "sends waiting at the leader", STEP_TIMEOUT)
        cluster.pause(cluster.spu_name(leader))
    finally:
        for f in followers:
            cluster.cont(cluster.spu_name(f))


async def test_f7_leader_demoted_while_stalled_acknowledges_nothing_it_truncates(cluster):
    """F7 (b): the SC restarts while the leader is stalled, so a follower registers first and is
    elected; the new leader takes other records at the offsets where the stalled leader holds
    uncommitted batches. When the old leader wakes up it learns it follows, truncates those
    batches and refills its log from the new leader: it must not acknowledge the sends that were
    waiting on them."""
    with trio.fail_after(180):
        admin, leader = await _setup(cluster)
        followers = await _followers(admin)
        other = [make_id(0, 98, i) for i in range(50)]
        # long produce timeout: the stalled sends must still be waiting when the leader wakes up
        config = WorkloadConfig(TOPIC, produce_timeout_ms=20_000, consumers=False)
        async with open_workload(admin, config) as w:
            await w.wait_acks(10, STEP_TIMEOUT)
            await _stall_leader_with_pending_sends(cluster, leader, followers, w)
            try:
                await trio.to_thread.run_sync(cluster.kill, "sc")
                await trio.to_thread.run_sync(cluster.resume)  # the SC only: the leader is stopped
                new = await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT, not_spu=leader)
                w.history.attempt(0, 98, other)
                resp = await send_batch(admin, new, TOPIC, 0, other,
                                        isolation=Isolation.ReadCommitted)
                assert resp.error_code.ok, resp.error_code
                w.history.ack(0, resp.base_offset, other, new, 0.0, 0.0)
            finally:
                cluster.cont(cluster.spu_name(leader))
            await wait_replica_caught_up(admin, TOPIC, 0, leader, resp.base_offset + len(other),
                                         STEP_TIMEOUT)
            await w.wait_acks(10, STEP_TIMEOUT)
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    _assert_promise_kept(cluster, result)


async def test_spu_failed_for_missed_heartbeats_rejoins_after_a_stall(cluster):
    """An SPU stalled (SIGSTOP) past the heartbeat timeout is failed and a new leader elected;
    when it runs again it must register again, follow, and catch up; nothing is lost."""
    with trio.fail_after(180):
        admin, leader = await _setup(cluster)
        followers = await _followers(admin)
        config = WorkloadConfig(TOPIC, produce_timeout_ms=20_000)
        async with open_workload(admin, config) as w:
            await w.wait_acks(10, STEP_TIMEOUT)
            await _stall_leader_with_pending_sends(cluster, leader, followers, w)
            try:
                # the SC fails it after the 2 s heartbeat timeout and elects another leader
                await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT, not_spu=leader)
            finally:
                cluster.cont(cluster.spu_name(leader))
            await w.wait_acks(10, STEP_TIMEOUT)
            target = 1 + max(o for _, o in w.history.acked.values())
            await wait_replica_caught_up(admin, TOPIC, 0, leader, target, STEP_TIMEOUT)
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP_TIMEOUT)
    _assert_promise_kept(cluster, result)
