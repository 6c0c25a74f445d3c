"""Whole-cluster shutdown/resume and member crashes keep topics, records and consumer offsets."""

from __future__ import annotations

import gc
import os
import signal
from pathlib import Path

import pytest

import fluvio
from fluvio import Offset

from .conftest import (
    Cluster,
    consume,
    create_topic,
    member_is_up,
    members_of,
    pid_alive,
    produce_strings,
    record_tuple,
    running_cluster,
    take,
    topic_names,
    unique_name,
    wait_until,
)

pytestmark = pytest.mark.compat


def _offset_consumer(client: fluvio.Fluvio, topic: str, consumer_id: str) -> fluvio.ConsumerIterator:
    builder = fluvio.ConsumerConfigExtBuilder(topic)
    builder.offset_start(Offset.beginning())
    builder.offset_consumer(consumer_id)
    builder.offset_strategy(fluvio.OffsetManagementStrategy.MANUAL)
    return client.consumer_with_config(builder.build())


def _all_down(cluster: Cluster, pids: set[int]) -> bool:
    return not any(pid_alive(p) for p in pids)


@pytest.mark.compat(timeout=240)
def test_shutdown_and_resume_keep_topics_records_and_offsets(tmp_path: Path, _client_env: None) -> None:
    with running_cluster(tmp_path / "home", spus=2) as cluster:
        admin, client = cluster.admin(), cluster.connect()
        single, multi = unique_name("rs-single"), unique_name("rs-multi")
        create_topic(admin, single)
        create_topic(admin, multi, partitions=2)

        values = [f"before-{i}" for i in range(500)]
        assert produce_strings(client, single, values) == [(0, i) for i in range(500)]
        producer = client.topic_producer(multi)
        outputs = [(k, producer.send(k, f"{k.decode()}-{i}".encode())) for i in range(50) for k in (b"a", b"b")]
        producer.flush()
        multi_rows = {}
        for key, out in outputs:
            meta = out.wait()
            multi_rows.setdefault(meta.partition_id(), []).append((meta.offset(), key))

        stream = _offset_consumer(client, single, "cr")
        assert [r.offset() for r in take(stream, 100)] == list(range(100))
        stream.offset_commit()
        stream.offset_flush()
        del stream, producer, outputs, client, admin
        gc.collect()

        before = members_of(cluster.status())
        pids = {m["pid"] for m in before}
        cluster.shutdown()
        wait_until(lambda: _all_down(cluster, pids), 15, "every member process to exit after shutdown")
        assert not any(member_is_up(m) for m in members_of(cluster.status()))

        cluster.resume()
        after = members_of(cluster.status())
        assert len(after) == len(before) == 3
        assert all(member_is_up(m) for m in after), after

        # The profile was rewritten with the (possibly new) endpoint; both ways of connecting work.
        admin = fluvio.FluvioAdmin.connect()
        assert {single, multi} <= topic_names(admin)
        client = fluvio.Fluvio.connect()

        assert [r.value_string() for r in consume(client, single, Offset.beginning())] == values
        for p, rows in multi_rows.items():
            got = [(r.offset(), bytes(r.key())) for r in consume(client, multi, Offset.beginning(), partitions=[p])]
            assert got == rows

        stored = [(c.consumer_id, c.offset) for c in client.consumer_offsets() if c.topic == single]
        assert stored == [("cr", 99)]
        assert next(_offset_consumer(client, single, "cr")).offset() == 100

        # New records continue the old offsets.
        assert produce_strings(client, single, ["after-0", "after-1"]) == [(0, 500), (0, 501)]
        tail = list(consume(client, single, Offset.from_end(3)))
        assert [(r.offset(), r.value_string()) for r in tail] == [(499, "before-499"), (500, "after-0"),
                                                                   (501, "after-1")]
        del client, admin
        gc.collect()

        cluster.shutdown()
        wait_until(lambda: _all_down(cluster, {m["pid"] for m in after}), 15, "members to exit")
        proc = cluster.cli("cluster", "delete", "--force")
        assert proc.returncode == 0


@pytest.mark.compat(timeout=180)
def test_killed_spu_is_resumed_with_its_data(tmp_path: Path, _client_env: None) -> None:
    with running_cluster(tmp_path / "home", spus=1) as cluster:
        admin, client = cluster.admin(), cluster.connect()
        topic = unique_name("rs-crash")
        admin.create_topic(topic)
        values = [f"acked-{i}" for i in range(300)]
        assert produce_strings(client, topic, values) == [(0, i) for i in range(300)]
        del client, admin
        gc.collect()

        (spu,) = [m for m in members_of(cluster.status()) if str(m["kind"]).lower() == "spu"]
        assert spu["pid"] in cluster.known_pids
        os.kill(spu["pid"], signal.SIGKILL)
        wait_until(lambda: not pid_alive(spu["pid"]), 10, "the SPU to die")
        wait_until(
            lambda: not all(member_is_up(m) for m in members_of(cluster.status())),
            15, "status to report the killed SPU down",
        )

        cluster.resume()
        assert all(member_is_up(m) for m in members_of(cluster.status()))
        client = cluster.connect()
        records = [record_tuple(r) for r in consume(client, topic, Offset.beginning())]
        assert [(o, v.decode()) for o, _, v in records] == list(enumerate(values))
        assert produce_strings(client, topic, ["after"]) == [(0, 300)]


@pytest.mark.compat(timeout=180)
def test_start_again_after_shutdown_keeps_topics_and_records(tmp_path: Path, _client_env: None) -> None:
    """``cluster start`` on a home whose cluster was shut down reuses its data (new ports, same topics)."""
    with running_cluster(tmp_path / "home", spus=1) as cluster:
        admin, client = cluster.admin(), cluster.connect()
        topic = unique_name("rs-again")
        admin.create_topic(topic)
        assert produce_strings(client, topic, ["x0", "x1", "x2"]) == [(0, 0), (0, 1), (0, 2)]
        del client, admin
        gc.collect()

        pids = {m["pid"] for m in members_of(cluster.status())}
        cluster.shutdown()
        wait_until(lambda: _all_down(cluster, pids), 15, "every member process to exit after shutdown")
        cluster.start()
        assert all(member_is_up(m) for m in members_of(cluster.status()))

        admin, client = cluster.admin(), cluster.connect()
        assert topic in topic_names(admin)
        assert [r.value_string() for r in consume(client, topic, Offset.beginning())] == ["x0", "x1", "x2"]
        assert produce_strings(client, topic, ["x3"]) == [(0, 3)]
