"""The official client across a leader failover (issue core-4: clients recover from a leader
change): records acknowledged at ReadCommitted before the leader is killed with SIGKILL are all
read back, and a producer created afterwards writes to the new leader."""

from __future__ import annotations

import os
import signal

import fluvio
import pytest

import fluvial.sync

from .conftest import consume, members_of, running_cluster, unique_name, wait_until

pytestmark = pytest.mark.compat


def leader_of(cluster, topic: str) -> tuple[int, str]:
    with fluvial.sync.connect(config_path=cluster.config_path) as fl:
        p = fl.admin.list_partitions(topic)[0]
        return p.leader, p.resolution


def test_official_client_survives_a_leader_kill(tmp_path, _client_env):
    with running_cluster(tmp_path, 3) as cluster:
        admin = cluster.admin()
        topic = unique_name("failover")
        admin.create_topic(topic, fluvio.TopicSpec.create().with_replications(3).build())
        client = cluster.connect()
        cfg = (fluvio.TopicProducerConfigBuilder().isolation(fluvio.Isolation.ReadCommitted)
               .timeout(5000).build())
        producer = client.topic_producer_with_config(topic, cfg)
        before = [producer.send_string(f"before-{i}") for i in range(50)]
        producer.flush()
        assert [o.wait().offset() for o in before] == list(range(50))

        old, _ = leader_of(cluster, topic)
        member = next(m for m in members_of(cluster.status()) if m.get("id") == old)
        os.kill(member["pid"], signal.SIGKILL)
        new = wait_until(lambda: (lambda lr: lr[0] if lr[0] != old and lr[1] == "Online" else None)(leader_of(cluster, topic)),
                         30, "a new leader")
        assert new != old

        fresh = cluster.connect()
        after_producer = fresh.topic_producer_with_config(topic, cfg)
        after = [after_producer.send_string(f"after-{i}") for i in range(50)]
        after_producer.flush()
        assert [o.wait().offset() for o in after] == list(range(50, 100))
        values = [r.value_string() for r in consume(fresh, topic)]
        assert values == [f"before-{i}" for i in range(50)] + [f"after-{i}" for i in range(50)]
