"""Many partitions on few SPUs (issue 19): followers fetch once per pair of SPUs, not once per
partition, and a failover leaves no partition without a leader.

One in-process cluster (3 SPUs, a topic of ``PARTITIONS`` partitions at RF=3) and the leader's
fetch handler wrapped to count, per (follower, leader) pair, the requests and the partitions each
carries. With one fetch per partition an idle pair would send about ``PARTITIONS / 3 / max_wait``
requests a second; batched, it sends about ``1 / max_wait`` whatever the partition count.
"""

from __future__ import annotations

import pytest
import trio

from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_objects as so
from fluvial.replication.fetch import FETCH_MAX_WAIT_MS
from fluvial.spu import private
from harness.client import ScAdmin
from harness.cluster import open_test_cluster

PARTITIONS = 150
IDLE_WINDOW = 5.0  # seconds of counting once every partition is online


@pytest.fixture
def fetch_counts(monkeypatch):
    """(follower, leader) -> [requests, most partitions in one request], for every fetch served."""
    counts: dict[tuple[int, int], list[int]] = {}
    serve = private.PRIVATE_HANDLERS[ia.InternalSpuApiKey.FetchReplicas]

    async def counting(ctx, conn, header, req):
        c = counts.setdefault((req.follower_id, ctx.spu_id), [0, 0])
        c[0] += 1
        c[1] = max(c[1], len(req.partitions))
        return await serve(ctx, conn, header, req)

    monkeypatch.setitem(private.PRIVATE_HANDLERS, ia.InternalSpuApiKey.FetchReplicas, counting)
    return counts


async def wait_all_led(admin: ScAdmin, topic: str, alive: set[int], timeout: float) -> float:
    """Seconds until every partition of ``topic`` has a leader in ``alive`` that reports it
    Online; fails the test after ``timeout``, naming the partitions still without one."""
    start = trio.current_time()
    missing: list[str] = []
    with trio.move_on_after(timeout):
        while True:
            ps = list((await admin.partitions(topic)).values())
            missing = [p.name for p in ps if p.spec.leader not in alive
                       or p.status.resolution != so.PartitionResolution.Online]
            if len(ps) == PARTITIONS and not missing:
                return trio.current_time() - start
            await trio.sleep(0.1)
    pytest.fail(f"{len(missing)} partitions without an online leader after {timeout}s: {missing[:10]}")


async def test_followers_fetch_once_per_spu_pair_and_failover_leads_every_partition(tmp_path, fetch_counts):
    with trio.fail_after(150):
        async with open_test_cluster(tmp_path, spus=3, heartbeat_timeout=3) as cluster:
            host, port = cluster.endpoint.split(":")
            admin = ScAdmin(host, int(port), timeout=30)
            await admin.create_topic("many", PARTITIONS, 3)
            await wait_all_led(admin, "many", {5001, 5002, 5003}, timeout=60)

            fetch_counts.clear()
            await trio.sleep(IDLE_WINDOW)  # counting, not synchronising: the window is the measure
            pairs = dict(fetch_counts)
            assert set(pairs) == {(f, l) for f in (5001, 5002, 5003) for l in (5001, 5002, 5003) if f != l}, pairs
            per_pair_limit = 4 * IDLE_WINDOW / (FETCH_MAX_WAIT_MS / 1000)  # a few polls a second, at most
            for pair, (requests, widest) in pairs.items():
                assert requests <= per_pair_limit, f"{pair}: {requests} fetches in {IDLE_WINDOW}s"
                # the pair shares about PARTITIONS/3 leaderships: one request carries them all
                assert widest >= PARTITIONS // 3 - 10, f"{pair}: at most {widest} partitions per fetch"

            await cluster.stop_spu(5001)
            took = await wait_all_led(admin, "many", {5002, 5003}, timeout=60)
            print(f"{PARTITIONS} partitions: all led and online {took:.2f}s after SPU 5001 stopped")
