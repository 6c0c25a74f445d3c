"""Issue safe-1, item 11: a leader cut off from the SC and its followers while clients still
reach it.

In-process cluster (``open_test_cluster(proxied=True)``): each SPU's link to the SC and its
followers' links to it go through a ``TcpProxy``; clients connect directly. The test cuts the
leader's proxies under ReadCommitted load (routed through the SC, as clients do) plus a
ReadUncommitted writer pinned to the cut-off leader, heals, and checks:

* no acknowledged ReadCommitted record is lost and the replicas agree (``check_history``);
* the cut-off leader acknowledges ReadUncommitted writes for at most its lease after the cut.
  The lease is what the SC grants (``leader_lease_ms`` of its heartbeat timeout) and runs from
  a report sent before the cut, so every acknowledgement the SPU decides to send comes within
  the lease. The client sees it later by the time the answer takes to arrive and be scheduled:
  ``ACK_SLACK_SECONDS`` bounds that on a loaded 2-core machine. This is a bound that must hold,
  not a measure of speed: without a lease the leader acknowledges until the partition heals.
"""

from __future__ import annotations

import time

import pytest
import trio

from fluvial.errors import FluvialError
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.spu_api import Isolation
from fluvial.sc.controller import leader_lease_ms
from harness.checker import check_history
from harness.client import (ScAdmin, send_batch, wait_leader, wait_partitions_in_sync,
                            wait_replica_caught_up)
from harness.disklogs import read_replica_log
from harness.history import History, make_id
from harness.workload import WorkloadConfig, open_workload
from harness.cluster import open_test_cluster

pytestmark = pytest.mark.slow

TOPIC = "partitioned"
STEP_TIMEOUT = 45.0
HEARTBEAT_TIMEOUT = 2.0
#: How much later than the SPU's decision a client may see an acknowledgement (module docstring).
ACK_SLACK_SECONDS = 1.0
#: How long the pinned writer keeps trying past the bound, so that later acks would show.
OBSERVE_PAST_BOUND_SECONDS = 1.0
RU_WRITER = 97


async def _pinned_ru_writer(admin: ScAdmin, spu: int, history: History, acks: list[float],
                            started: trio.Event, stop_at: list[float]) -> None:
    """ReadUncommitted batches to ``spu`` whatever its role, until ``stop_at[0]`` (monotonic);
    appends the time each acknowledgement arrived to ``acks``. Sends are recorded as attempts
    only: ReadUncommitted acknowledgements promise nothing across a failover."""
    seq = 0
    while time.monotonic() < stop_at[0]:
        batch = [make_id(0, RU_WRITER, seq + i) for i in range(2)]
        seq += len(batch)
        history.attempt(0, RU_WRITER, batch)
        try:
            resp = await send_batch(admin, spu, TOPIC, 0, batch, isolation=Isolation.ReadUncommitted,
                                    timeout_ms=1000)
        except (FluvialError, DecodeError, OSError, trio.BrokenResourceError,
                trio.ClosedResourceError):
            resp = None
        if resp is not None and resp.error_code.ok:
            acks.append(time.monotonic())
            started.set()
        else:
            await trio.sleep(0.02)  # the workload's back-off, not synchronisation


async def test_partitioned_leader_stops_acknowledging_within_its_lease(tmp_path):
    lease = leader_lease_ms(HEARTBEAT_TIMEOUT) / 1000
    assert 0 < lease < HEARTBEAT_TIMEOUT
    history = History()
    ru_acks: list[float] = []
    with trio.fail_after(120):
        async with open_test_cluster(tmp_path, spus=3, heartbeat_timeout=HEARTBEAT_TIMEOUT,
                                     proxied=True, replica_lag_time_max=2.0) as cluster:
            admin = ScAdmin("127.0.0.1", cluster.sc_ports[0])
            await admin.create_topic(TOPIC, partitions=1, replication=3)
            leader = await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT)
            config = WorkloadConfig(TOPIC, produce_timeout_ms=1500)
            async with open_workload(admin, config, history) as w:
                await w.wait_acks(10, STEP_TIMEOUT)
                ru_started = trio.Event()
                stop_at = [float("inf")]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pinned_ru_writer, admin, leader, history, ru_acks,
                                       ru_started, stop_at)
                    with trio.fail_after(STEP_TIMEOUT):
                        await ru_started.wait()
                    cut_at = time.monotonic()
                    cluster.isolate(leader)
                    stop_at[0] = cut_at + lease + ACK_SLACK_SECONDS + OBSERVE_PAST_BOUND_SECONDS
                    # meanwhile the SC fails the leader and elects another; writes go on there
                    await wait_leader(admin, TOPIC, 0, STEP_TIMEOUT, not_spu=leader)
                    await w.wait_acks(10, STEP_TIMEOUT)
                cluster.heal(leader)
                # under load the leader's LEO is always a batch ahead of its HW, so "in sync"
                # means the old leader holds everything acknowledged so far; then quiet, all equal
                target = 1 + max(o for p, o in history.acked.values() if p == 0)
                await wait_replica_caught_up(admin, TOPIC, 0, leader, target, STEP_TIMEOUT)
                await w.wait_acks(10, STEP_TIMEOUT)
                await w.stop()
                await wait_partitions_in_sync(admin, TOPIC, 1, 3, STEP_TIMEOUT)
                read_back = await w.read_all(0, STEP_TIMEOUT)
            spus = sorted(cluster.spus)
        # the cluster is stopped: read every replica from disk
    logs = {0: {f"spu-{s}": read_replica_log(tmp_path / f"spu-{s}", TOPIC, 0) for s in spus}}
    logs[0]["read-back"] = read_back
    result = check_history(history, logs)
    assert result.ok, result.summary()
    assert result.converged, result.summary()

    late = [round(t - cut_at, 3) for t in ru_acks if t - cut_at > lease + ACK_SLACK_SECONDS]
    last = max(ru_acks) - cut_at
    assert not late, (f"the cut-off leader {leader} acknowledged ReadUncommitted writes "
                      f"{late[:10]} s after the cut (lease {lease} s + slack {ACK_SLACK_SECONDS} s); "
                      f"last at {last:.3f} s")
