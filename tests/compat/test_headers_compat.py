"""Record headers and idempotent batches next to the official client: records fluvial's client
sent with headers (and with a producer id and sequences) read by ``fluvio==0.21.0`` without error,
the same values and offsets, no headers."""

from __future__ import annotations

import pytest

import fluvial.sync
from fluvio import Offset

from .conftest import Cluster, consume, produce_strings, unique_name

pytestmark = pytest.mark.compat


def test_the_official_client_reads_records_sent_with_headers(cluster: Cluster) -> None:
    topic = unique_name("headers")
    with fluvial.sync.connect(config_path=cluster.config_path) as fl:
        fl.admin.create_topic(topic)
        p = fl.producer(topic, idempotent=True, linger=0.02)
        for i in range(20):
            p.send(b"v%d" % i, key=b"k", headers={"n": str(i)} if i % 3 else None)
        p.flush()
        p.close()
    client = cluster.connect()
    # and the official client's own records after them, in the same partition
    assert produce_strings(client, topic, ["official"]) == [(0, 20)]
    records = list(consume(client, topic, Offset.beginning()))
    assert [(r.offset(), bytes(r.value())) for r in records] == (
        [(i, b"v%d" % i) for i in range(20)] + [(20, b"official")])
    with fluvial.sync.connect(config_path=cluster.config_path) as fl:
        c = fl.consumer(topic, partition=0, offset=fluvial.Offset.beginning(), continuous=False)
        got = list(c)
        c.close()
    assert [r.headers for r in got[:4]] == [(), (("n", b"1"),), (("n", b"2"),), ()]
