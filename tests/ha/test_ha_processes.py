"""kill -9 the controller SC of a process cluster started with ``--sc 3 --etcd``, under
ReadCommitted produce (harness.workload): another SC takes over within the lease, a following
SPU kill still gets a clean election, a topic create works through a surviving SC, and no
acknowledged record is lost (harness.checker on the replicas read back from disk)."""

from __future__ import annotations

import time

import pytest
import trio

from harness.client import wait_leader, wait_until
from harness.ha import HaAdmin, process_controller
from harness.processes import ProcessCluster
from harness.scenarios import heal_and_collect
from harness.workload import WorkloadConfig, open_workload

pytestmark = pytest.mark.slow

TOPIC = "ha"
LEASE = 2.0
STEP = 45.0


@pytest.fixture
def ha_processes(tmp_path, etcd):  # etcd: only for the skip when etcd-server is missing
    cluster = ProcessCluster(tmp_path / "home", spus=3, heartbeat_timeout=2.0, replica_lag_time_max=2.0,
                             tls=False, start_args=("--sc", "3", "--etcd", "--controller-lease", str(LEASE)))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


async def test_kill_the_controller_sc_under_produce(ha_processes):
    cluster = ha_processes
    with trio.fail_after(150):
        admin = HaAdmin([("127.0.0.1", m["public_port"]) for m in cluster.members() if m["kind"] == "sc"])
        await admin.create_topic(TOPIC, partitions=1, replication=3)
        await wait_leader(admin, TOPIC, 0, STEP)
        async with open_workload(admin, WorkloadConfig(TOPIC)) as w:
            await w.wait_acks(10, STEP)
            old = await trio.to_thread.run_sync(process_controller, cluster)
            assert old is not None
            killed_at = await trio.to_thread.run_sync(cluster.kill, old)

            async def taken_over():
                now = await trio.to_thread.run_sync(process_controller, cluster)
                return now not in (None, old) and now
            new = await wait_until(taken_over, "another SC taking over", STEP, interval=0.02)
            took = time.monotonic() - killed_at
            # etcd drops the key one lease after the last keepalive; the poll adds lease/10
            assert took < LEASE * 1.5 + 1.0, f"{new} took over {took:.2f}s after the kill"
            await w.wait_acks(10, STEP)
            await admin.create_topic("after-failover", partitions=1, replication=2)

            leader = (await admin.partitions(TOPIC))[0].spec.leader
            await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(leader))

            async def elected():
                p = (await admin.partitions(TOPIC))[0]
                return p.spec.leader != leader and p.spec.leader in p.spec.replicas and p
            await wait_until(elected, "a clean election by the new controller", STEP)
            await w.wait_acks(10, STEP)
            await w.stop()
        result = await heal_and_collect(cluster, admin, w, timeout=STEP)
    assert result.ok, result.summary()
    assert result.converged, result.summary()
    assert result.acknowledged > 0
