"""kill -9 the controller SC of a process cluster started with ``--sc 3 --etcd``, under
ReadCommitted produce (harness.workload): another SC takes over within the lease, a following
SPU kill still gets a clean election, a topic create works through a surviving SC, and no
acknowledged record is lost (harness.checker on the replicas read back from disk)."""

from __future__ import annotations

import os
import subprocess
import sys
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


# the official client, in a subprocess (it may block in native code holding the GIL)
OFFICIAL_CLIENT = """
import sys, fluvio
endpoint, topic = sys.argv[1], sys.argv[2]
admin = fluvio.FluvioAdmin.connect_with_config(fluvio.FluvioConfig.new(endpoint))
admin.create_topic(topic, fluvio.TopicSpec.create().with_partitions(1).with_replications(1).build())
client = fluvio.Fluvio.connect_with_config(fluvio.FluvioConfig.new(endpoint))
producer = client.topic_producer(topic)
for v in ("a", "b", "c"):
    producer.send_string(v)
producer.flush()
b = fluvio.ConsumerConfigExtBuilder(topic)
b.offset_start(fluvio.Offset.beginning())
b.disable_continuous(True)
print(",".join(bytes(r.value()).decode() for r in client.consumer_with_config(b.build())))
"""


def test_the_official_client_works_against_any_one_sc(ha_processes):
    pytest.importorskip("fluvio", reason="the official fluvio client is not installed")
    env = dict(os.environ, FLV_SOCKET_WAIT="10", FLV_METADATA_TIMEOUT="10000")
    for m in ha_processes.members():
        if m["kind"] != "sc":
            continue
        topic = f"official-{m['id']}"
        out = subprocess.run([sys.executable, "-c", OFFICIAL_CLIENT, f"127.0.0.1:{m['public_port']}", topic],
                             capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0 and out.stdout.strip() == "a,b,c", (m, out.stdout, out.stderr[-2000:])


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
