"""``fl.admin``: topics, partitions, SPUs, and errors as typed exceptions."""

from __future__ import annotations

import pytest
import trio

import fluvial
from fluvial.errors import ErrorCode, FluvialError

from .conftest import TEST_TIMEOUT


async def test_create_list_describe_delete_a_topic(fl):
    with trio.fail_after(TEST_TIMEOUT):
        await fl.admin.create_topic("orders", partitions=2, retention=3600, segment_size=4096,
                                    max_partition_size=8192, compression="lz4")
        (t,) = await fl.admin.list_topics()
        assert t == await fl.admin.describe_topic("orders")
        assert (t.name, t.partitions, t.replication_factor) == ("orders", 2, 1)
        assert (t.retention_seconds, t.segment_size, t.max_partition_size) == (3600, 4096, 8192)
        assert t.compression == "lz4" and not t.system
        assert t.resolution == "Provisioned" and t.assigned == {0: [5001], 1: [5001]}
        await fl.admin.create_topic("other")
        assert [x.name for x in await fl.admin.list_topics(["ord"])] == ["orders"]
        assert {x.name for x in await fl.admin.list_topics()} == {"orders", "other"}
        await fl.admin.delete_topic("orders")
        assert [x.name for x in await fl.admin.list_topics()] == ["other"]
        with pytest.raises(fluvial.errors.TopicNotFoundError):
            await fl.admin.describe_topic("orders")


async def test_topic_defaults_and_the_system_topic(fl):
    with trio.fail_after(TEST_TIMEOUT):
        await fl.admin.create_topic("plain")
        t = await fl.admin.describe_topic("plain")
        assert (t.partitions, t.retention_seconds, t.segment_size, t.compression) == (1, 604800, None, "any")
        system = await fl.admin.list_topics(system=True)
        assert "consumer-offset" in {x.name for x in system} and all(x.system for x in system)
        assert (await fl.admin.describe_topic("consumer-offset")).system


async def test_create_errors_are_typed_and_carry_the_message(fl):
    with trio.fail_after(TEST_TIMEOUT):
        await fl.admin.create_topic("dup")
        with pytest.raises(fluvial.errors.TopicAlreadyExistsError) as e:
            await fl.admin.create_topic("dup")
        assert e.value.code == ErrorCode.TopicAlreadyExists and "dup" in str(e.value)
        with pytest.raises(fluvial.errors.TopicInvalidNameError, match="Invalid topic name"):
            await fl.admin.create_topic("Bad_Name")
        with pytest.raises(FluvialError) as e:
            await fl.admin.create_topic("zero", partitions=0)
        assert e.value.code != ErrorCode.None_
        with pytest.raises(fluvial.errors.TopicInvalidConfigurationError):
            await fl.admin.create_topic("tiny", segment_size=10)
        with pytest.raises(fluvial.errors.TopicNotFoundError):
            await fl.admin.delete_topic("never-created")
        with pytest.raises(fluvial.errors.SystemSpecDeletionAttemptError):
            await fl.admin.delete_topic("consumer-offset")
        assert {t.name for t in await fl.admin.list_topics()} == {"dup"}


async def test_dry_run_creates_nothing(fl):
    with trio.fail_after(TEST_TIMEOUT):
        await fl.admin.create_topic("dry", dry_run=True)
        assert await fl.admin.list_topics() == []


async def test_assigned_replica_maps(cluster3):
    with trio.fail_after(TEST_TIMEOUT):
        async with fluvial.connect(endpoint=cluster3.endpoint) as fl:
            await fl.admin.create_topic("placed", assigned={0: [5002, 5001], 1: [5003, 5002]})
            t = await fl.admin.describe_topic("placed")
            assert (t.partitions, t.replication_factor) == (2, 2)
            assert t.assigned == {0: [5002, 5001], 1: [5003, 5002]}
            parts = await fl.admin.list_partitions("placed")
            assert [(p.partition, p.leader, p.replicas) for p in parts] == [
                (0, 5002, [5002, 5001]), (1, 5003, [5003, 5002])]
            with pytest.raises(FluvialError):
                await fl.admin.create_topic("gap", assigned={0: [5001], 2: [5002]})


async def test_list_partitions_reports_offsets(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(2)
        async with fl.producer(topic, partitioner=1) as p:
            await p.send_many([b"x"] * 5)
        with trio.fail_after(10):
            while True:
                parts = await fl.admin.list_partitions(topic)
                if parts[1].leo == 5:
                    break
                await fl.metadata.wait_changed(timeout=0.1)
        p0, p1 = parts
        assert (p0.topic, p0.partition, p0.leader, p0.resolution) == (topic, 0, 5001, "Online")
        assert (p1.hw, p1.leo, p1.isr, p1.replicas) == (5, 5, [5001], [5001])
        assert p1.size > 0 and p0.leo == 0
        assert [p.topic for p in await fl.admin.list_partitions(system=True)] == ["consumer-offset"]


async def test_list_register_and_unregister_spus(fl, cluster):
    with trio.fail_after(TEST_TIMEOUT):
        (spu,) = await fl.admin.list_spus()
        assert spu.id == 5001 and spu.online and spu.type == "Custom"
        assert spu.public_address == f"127.0.0.1:{cluster.spus[5001].config.public_port}"
        await fl.admin.register_spu(6000, "127.0.0.1:7000", "127.0.0.1:7001", name="extra", rack="r1")
        with pytest.raises(fluvial.errors.SpuAlreadyExistsError):
            await fl.admin.register_spu(6000, "127.0.0.1:7000", "127.0.0.1:7001", name="extra")
        await fl.admin.unregister_spu("extra")
        with pytest.raises(fluvial.errors.SpuNotFoundError):
            await fl.admin.unregister_spu(6000)
        await fl.admin.register_spu(6001, "127.0.0.1:7000", "127.0.0.1:7001")
        await fl.admin.unregister_spu(6001)  # by id
        assert [s.id for s in await fl.admin.list_spus()] == [5001]


async def test_a_registered_spu_is_listed_at_once_as_offline(fl):
    with trio.fail_after(TEST_TIMEOUT):
        await fl.admin.register_spu(6000, "127.0.0.1:7000", "127.0.0.1:7001", name="extra", rack="r1")
        spus = {s.id: s for s in await fl.admin.list_spus()}
        assert spus[6000].name == "extra" and spus[6000].rack == "r1"
        assert spus[6000].public_address == "127.0.0.1:7000" and not spus[6000].online


async def test_the_metadata_cache_follows_admin_changes(fl):
    with trio.fail_after(TEST_TIMEOUT):
        await fl.admin.create_topic("seen", partitions=3)
        assert fl.metadata.partition_count("seen") == 3
        assert fl.metadata.leader_of("seen", 2) == 5001
        await fl.admin.delete_topic("seen")
        assert fl.metadata.partition_count("seen") == 0
        with pytest.raises(fluvial.errors.TopicNotFoundError):
            await fl.metadata.topic("seen")


async def test_connect_errors(tmp_path, monkeypatch):
    with trio.fail_after(TEST_TIMEOUT):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()  # nothing listens there now
        with pytest.raises(fluvial.ConnectionLost):
            async with fluvial.connect(endpoint=f"127.0.0.1:{port}"):
                pass
        monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path))
        monkeypatch.delenv("FLUVIAL_CONFIG", raising=False)
        with pytest.raises(fluvial.ConfigError, match="fluvial cluster start"):
            async with fluvial.connect():
                pass


async def test_connect_with_the_current_profile(cluster, tmp_path, monkeypatch):
    from fluvial.client import profile

    with trio.fail_after(TEST_TIMEOUT):
        monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path))
        monkeypatch.delenv("FLUVIAL_CONFIG", raising=False)
        profile.add_profile("local", cluster.endpoint)
        async with fluvial.connect() as fl:
            assert fl.cluster.profile == "local"
            assert [s.id for s in await fl.admin.list_spus()] == [5001]
        async with fluvial.connect(profile="local") as fl:
            assert fl.cluster.endpoint == cluster.endpoint


async def test_the_client_reconnects_to_a_restarted_sc(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic) as p:
            await cluster.stop_sc()
            # the data path does not need the SC
            assert (await (await p.send(b"during"))).offset == 0
            await cluster.start_sc()
            # admin calls wait for the new SC connection, and the watches come back
            assert [t.name for t in await fl.admin.list_topics()] == [topic]
            while not all(s.online for s in await fl.admin.list_spus()):
                await fl.metadata.wait_changed(timeout=0.1)  # the SPU registers again
            await fl.admin.create_topic("after-restart")
            while "after-restart" not in fl.metadata.topics:
                await fl.metadata.wait_changed(timeout=1)
            assert (await (await p.send(b"after"))).offset == 1
