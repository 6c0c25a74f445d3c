"""fluvial's client and the official ``fluvio`` client (PyPI 0.21.0) read each other's records
identically, and put a key in the same partition.

The official client runs in a subprocess (its blocking calls hold the GIL, which would freeze the
in-process cluster that this test's trio loop serves); it prints JSON on its last line.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import trio

import fluvial
from fluvial.client.partitioner import partition_for_key

from .conftest import TEST_TIMEOUT

pytest.importorskip("fluvio")

pytestmark = pytest.mark.compat

OFFICIAL_PRODUCE = """
import json, sys, fluvio
endpoint, topic, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = fluvio.Fluvio.connect_with_config(fluvio.FluvioConfig.new(endpoint))
producer = client.topic_producer(topic)
outputs = [producer.send(bytes.fromhex(k), bytes.fromhex(v)) for k, v in spec]
producer.flush()
metas = [o.wait() for o in outputs]
print(json.dumps([[m.partition_id(), m.offset()] for m in metas]))
"""

OFFICIAL_CONSUME = """
import json, sys, fluvio
endpoint, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = fluvio.Fluvio.connect_with_config(fluvio.FluvioConfig.new(endpoint))
out = []
for p in range(partitions):
    builder = fluvio.ConsumerConfigExtBuilder(topic)
    builder.partition(p)
    builder.offset_start(fluvio.Offset.beginning())
    builder.disable_continuous(True)
    for r in client.consumer_with_config(builder.build()):
        out.append([p, r.offset(), bytes(r.key()).hex(), bytes(r.value()).hex(), r.timestamp()])
print(json.dumps(out))
"""


async def run_official(code: str, *args: str):
    env = dict(os.environ, FLV_SOCKET_WAIT="10", FLV_METADATA_TIMEOUT="10000")
    proc = await trio.run_process([sys.executable, "-c", code, *args], capture_stdout=True,
                                  capture_stderr=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def records_spec(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"" if i % 4 == 0 else b"key-%d" % (i % 9), b"value-%d-" % i + bytes(i % 50))
            for i in range(n)]


async def test_records_from_the_official_client_read_back_identically(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(3)
        spec = records_spec(40)
        metas = await run_official(OFFICIAL_PRODUCE, fl.cluster.endpoint, topic,
                                   json.dumps([[k.hex(), v.hex()] for k, v in spec]))
        for (key, _), (partition, _) in zip(spec, metas):
            assert partition == partition_for_key(key, 3)  # the official client always has a key
        async with fl.consumer(topic, continuous=False) as c:
            got = {(r.partition, r.offset): r async for r in c}
        assert len(got) == len(spec)
        for (key, value), (partition, offset) in zip(spec, metas):
            r = got[(partition, offset)]
            assert (r.key, r.value) == (key, value)
            assert r.timestamp > 0


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_records_from_fluvial_read_back_identically_by_the_official_client(fl, new_topic, compression):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(3)
        spec = records_spec(40) + [(None, b"unkeyed-%d" % i) for i in range(6)]
        sent = {}
        async with fl.producer(topic, compression=compression) as p:
            futures = [(k, v, await p.send(v, key=k)) for k, v in spec]
            for k, v, f in futures:
                m = await f
                sent[(m.partition, m.offset)] = (k, v)
                if k is not None:
                    assert m.partition == partition_for_key(k, 3)
        async with fl.consumer(topic, continuous=False) as c:
            ours = {(r.partition, r.offset): r.timestamp async for r in c}
        theirs = await run_official(OFFICIAL_CONSUME, fl.cluster.endpoint, topic, "3")
        assert len(theirs) == len(spec)
        for partition, offset, key_hex, value_hex, timestamp in theirs:
            key, value = sent[(partition, offset)]
            # the official Python client shows a missing key as b"No key"
            assert bytes.fromhex(key_hex) == (b"No key" if key is None else key)
            assert bytes.fromhex(value_hex) == value
            assert timestamp == ours[(partition, offset)]


async def test_the_same_key_lands_in_the_same_partition_from_either_client(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(5)
        keys = [b"", b"k", b"key", b"hello", b"a", b"b", b"user-42", bytes(range(40))]
        theirs = await run_official(OFFICIAL_PRODUCE, fl.cluster.endpoint, topic,
                                    json.dumps([[k.hex(), b"x".hex()] for k in keys]))
        async with fl.producer(topic) as p:
            ours = [await (await p.send(b"y", key=k)) for k in keys]
        assert [m.partition for m in ours] == [t[0] for t in theirs]
        assert [t[0] for t in theirs] == [partition_for_key(k, 5) for k in keys]
        assert isinstance(fluvial.RecordMetadata(0, 0), tuple)
