"""Compacted topics end to end: the cleanup policy set through the admin API reaches the SPUs,
leader and follower compact their own logs in housekeeping, and consumers read the latest value
per key across the gaps, before and after a restart."""

from __future__ import annotations

import os

import trio

import fluvial
from fluvial.client.admin import cleanup_action
from fluvial.protocol import sc_api as sa
from fluvial.protocol.batch import HEADER_BYTES, MAGIC, BatchError, read_header
from fluvial.protocol.codec import DecodeError
from fluvial.protocol import sc_objects as so
from fluvial.protocol.record import decode_record_set
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.replica import Replica
from harness.client import ScAdmin, wait_partitions_in_sync
from harness.cluster import open_test_cluster

import pytest

KEYS = 8
ROUNDS = 12


async def consume_all(fl, topic) -> list[tuple[int, bytes, bytes]]:
    async with fl.consumer(topic, continuous=False) as c:
        return [(r.offset, r.key, r.value) async for r in c]


def latest(records) -> dict:
    return {k: (off, v) for off, k, v in records}


def compacted_on_disk(data_dir, topic) -> bool:
    """Whether the sealed segments of ``topic``-0 under ``data_dir`` hold fewer records than
    their offsets span (compaction ran), read-only while the SPU runs: the cleaner swaps whole
    files by rename, and sealed segments are never written in place."""
    d = data_dir / f"{topic}-0"
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".log"))
        if len(names) < 2:
            return False
        count = sum(len(decode_record_set((d / n).read_bytes())) for n in names[:-1])
    except (OSError, DecodeError):  # a file renamed away under the listing: try again
        return False
    return count < int(names[-1][:20]) - int(names[0][:20])


def replica_records(base, topic) -> list[tuple[int, bytes, bytes]]:
    r = Replica.open(base, topic, 0, ReplicaConfig())
    try:
        return [(x.offset, x.key, x.value) for x in decode_record_set(r.read(0, 1 << 30, r.leo).read_bytes())]
    finally:
        r.close()


async def test_compacted_topic_keeps_latest_per_key_on_every_replica_and_across_a_restart(tmp_path):
    with trio.fail_after(90):
        async with open_test_cluster(tmp_path, spus=2, heartbeat_timeout=2) as cluster:
            for m in cluster.spus.values():  # fast housekeeping
                m.config.checkpoint_seconds = 0.1
                m.config.compaction_check_seconds = 0.1
            async with fluvial.connect(endpoint=cluster.endpoint, metadata_timeout=10,
                                       request_timeout=20) as fl:
                await fl.admin.create_topic("kv", 1, 2, segment_size=1024, cleanup_policy="compact",
                                            tombstone_retention=3600, min_cleanable_dirty_ratio=0)
                sent = []
                async with fl.producer("kv") as p:
                    for r in range(ROUNDS):
                        for k in range(KEYS):
                            sent.append((f"key-{k}".encode(), f"value-{r}-{k}".encode() * 4))
                    sent.append((b"key-0", b""))  # a delete (tombstone)
                    for key, value in sent:
                        await (await p.send(value, key=key)).wait()
                produced = [(off, k, v) for off, (k, v) in enumerate(sent)]
                expected = latest(produced)

                async def compacted():
                    got = await consume_all(fl, "kv")
                    return got if len(got) < len(produced) and got[-1][0] == len(produced) - 1 else None

                with trio.fail_after(30):
                    while (got := await compacted()) is None:
                        await trio.sleep(0.1)
                    # the follower cleans its own log, on its own schedule
                    while not all(compacted_on_disk(m.config.data_dir, "kv") for m in cluster.spus.values()):
                        await trio.sleep(0.1)
                assert latest(got) == expected
                assert set(got) <= set(produced)  # offsets, keys and values unchanged
                assert expected[b"key-0"][1] == b""  # the delete is still there (1 h retention)
                for spu_id in list(cluster.spus):  # a restart rebuilds the state from the compacted log
                    await cluster.stop_spu(spu_id)
                    await cluster.start_spu(spu_id)
                with trio.fail_after(20):
                    while True:
                        try:
                            restarted = await consume_all(fl, "kv")
                            break
                        except fluvial.FluvialError:
                            await trio.sleep(0.1)
                assert latest(restarted) == expected and len(restarted) <= len(got)
                async with fl.producer("kv") as p:  # the log goes on after the gaps
                    await (await p.send(b"again", key=b"key-1")).wait()
                with trio.fail_after(10):  # acknowledged before the HW covers it (ReadUncommitted)
                    while (after := await consume_all(fl, "kv"))[-1][0] < len(produced):
                        await trio.sleep(0.05)
                assert latest(after)[b"key-1"] == (len(produced), b"again")
                # the follower copies it on its own schedule: compare the replicas once it has
                await wait_partitions_in_sync(ScAdmin("127.0.0.1", cluster.sc_ports[0]), "kv", 1, 2, 20)

            for spu_id in list(cluster.spus):
                await cluster.stop_spu(spu_id)
            leader, follower = (replica_records(cluster.base / f"spu-{s}", "kv") for s in sorted(cluster.spus))
            # each compacted on its own: both smaller than the log, same latest value per key
            assert latest(leader) == latest(follower) == latest(after)
            assert len(leader) < len(produced) and len(follower) < len(produced)


async def test_cleanup_settings_are_checked(tmp_path):
    with pytest.raises(ValueError):
        cleanup_action("shrink", None, None, None)
    with pytest.raises(ValueError):
        cleanup_action(None, -1, None, None)
    with pytest.raises(ValueError):
        cleanup_action(None, None, None, 1.5)
    assert cleanup_action(None, None, None, None) is None
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            async with fluvial.connect(endpoint=cluster.endpoint, metadata_timeout=10) as fl:
                await fl.admin.create_topic("plain")
                # the SC refuses what a hostile client sends past the client's checks
                st = await fl.sc_call(sa.ObjectApiUpdateRequest.of(
                    so.TopicSpec, "plain", so.SetCleanupConfig("shrink", None, None, None)))
                assert not st.error_code.ok and "cleanup policy" in (st.error_message or "")
                st = await fl.sc_call(sa.ObjectApiUpdateRequest.of(
                    so.TopicSpec, "plain", so.SetCleanupConfig(None, None, None, 101)))
                assert not st.error_code.ok
                with pytest.raises(fluvial.FluvialError):
                    await fl.admin.set_cleanup_config("missing", cleanup_policy="compact")
                await fl.admin.set_cleanup_config("plain", cleanup_policy="compact")


def log_end_on_disk(data_dir, topic) -> int:
    """The offset after the last whole batch of ``topic``-0 under ``data_dir``, read-only (the
    active segment may end in preallocated zeros)."""
    d = data_dir / f"{topic}-0"
    names = sorted(n for n in os.listdir(d) if n.endswith(".log"))
    data = (d / names[-1]).read_bytes()
    end, pos = int(names[-1][:20]), 0
    while len(data) - pos >= HEADER_BYTES:
        try:
            h = read_header(data, pos)
        except BatchError:  # the zeros after the data
            break
        if h.magic != MAGIC or pos + h.size > len(data):
            break
        end, pos = h.next_offset, pos + h.size
    return end


async def test_a_follower_that_was_away_catches_up_across_the_leaders_gaps(tmp_path):
    with trio.fail_after(90):
        async with open_test_cluster(tmp_path, spus=2, heartbeat_timeout=2) as cluster:
            for m in cluster.spus.values():
                m.config.checkpoint_seconds = 0.1
                m.config.compaction_check_seconds = 0.1
            async with fluvial.connect(endpoint=cluster.endpoint, metadata_timeout=10,
                                       request_timeout=20) as fl:
                await fl.admin.create_topic("lag", assigned={0: [5001, 5002]}, segment_size=1024,
                                            cleanup_policy="compact", min_cleanable_dirty_ratio=0)
                sent = [(f"key-{k}".encode(), f"value-{r}-{k}".encode() * 4) for r in range(ROUNDS)
                        for k in range(KEYS)]
                async with fl.producer("lag") as p:
                    for key, value in sent[:KEYS]:
                        await (await p.send(value, key=key)).wait()
                    await cluster.stop_spu(5002)  # the follower is away while the leader compacts
                    for key, value in sent[KEYS:]:
                        await (await p.send(value, key=key)).wait()
                expected = latest([(off, k, v) for off, (k, v) in enumerate(sent)])
                with trio.fail_after(30):
                    while not compacted_on_disk(cluster.spus[5001].config.data_dir, "lag"):
                        await trio.sleep(0.1)
                await cluster.start_spu(5002)
                with trio.fail_after(30):  # it fetches from inside the gaps, then compacts on its own
                    while log_end_on_disk(cluster.spus[5002].config.data_dir, "lag") < len(sent):
                        await trio.sleep(0.1)
            for spu_id in (5001, 5002):
                await cluster.stop_spu(spu_id)
            leader = replica_records(cluster.base / "spu-5001", "lag")
            follower = replica_records(cluster.base / "spu-5002", "lag")
            assert latest(leader) == latest(follower) == expected
            assert len(follower) < len(sent)  # it received the leader's gaps
