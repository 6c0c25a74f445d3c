"""Connecting and administering topics with the official ``fluvio`` client (SC side)."""

from __future__ import annotations

import pytest

import fluvio

from .conftest import (
    Cluster,
    create_topic,
    error_text,
    member_is_up,
    members_of,
    produce_strings,
    run_client_snippet,
    topic_names,
    unique_name,
    wait_until,
)

pytestmark = pytest.mark.compat


def test_start_prints_endpoint_and_writes_profile(cluster: Cluster) -> None:
    host, _, port = cluster.endpoint.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0
    assert cluster.endpoint in cluster.start_output


def test_status_lists_sc_and_spus_up(cluster: Cluster) -> None:
    members = members_of(cluster.status())
    kinds = sorted(str(m["kind"]).lower() for m in members)
    assert kinds == ["sc", "spu"], members
    assert all(member_is_up(m) for m in members), members
    assert all(isinstance(m.get("pid"), int) for m in members), members


def test_connect_via_profile() -> None:
    """``Fluvio.connect()``/``FluvioAdmin.connect()`` read ``FLV_PROFILE_PATH`` (set by the fixture)."""
    config = fluvio.FluvioConfig.load()
    assert config is not None
    client = fluvio.Fluvio.connect()
    assert client is not None
    admin = fluvio.FluvioAdmin.connect()
    assert isinstance(admin.all_topics(), list)


def test_connect_with_config(cluster: Cluster) -> None:
    config = cluster.config()
    config.set_client_id("compat-suite")
    client = fluvio.Fluvio.connect_with_config(config)
    assert client is not None
    admin = fluvio.FluvioAdmin.connect_with_config(cluster.config())
    assert isinstance(admin.all_topics(), list)


def test_system_topic_consumer_offset_is_hidden_from_plain_list(cluster: Cluster) -> None:
    """``consumer-offset`` exists (system topic) but a plain list does not show it (system=false)."""
    admin = cluster.admin()
    assert "consumer-offset" not in topic_names(admin)
    # It exists: the consumer-offset APIs address its partition 0 and answer.
    assert isinstance(cluster.connect().consumer_offsets(), list)


def test_create_one_and_three_partitions_then_list(cluster: Cluster) -> None:
    admin = cluster.admin()
    one, three = unique_name("adm-one"), unique_name("adm-three")
    admin.create_topic(one)  # the wrapper's default spec: computed(1, 1, ignore_rack)
    create_topic(admin, three, partitions=3)

    names = topic_names(admin)
    assert {one, three} <= names

    listed = [t.name() for t in admin.list_topics([three])]
    assert listed == [three]
    with_params = [t.name() for t in admin.list_topics_with_params([one], False)]
    assert with_params == [one]

    partitions = {p.name() for p in admin.list_partitions([])}
    assert {f"{one}-0", f"{three}-0", f"{three}-1", f"{three}-2"} <= partitions
    assert f"{one}-1" not in partitions
    assert f"{three}-3" not in partitions


def test_created_partitions_have_a_working_leader(cluster: Cluster) -> None:
    """The client routes by ``PartitionSpec.leader`` and the SPU store; a produce to every partition proves both."""
    admin = cluster.admin()
    topic = unique_name("adm-leader")
    create_topic(admin, topic, partitions=3)
    client = cluster.connect()
    for p in range(3):
        config = fluvio.TopicProducerConfigBuilder().set_specific_partitioner(p).build()
        producer = client.topic_producer_with_config(topic, config)
        out = producer.send(b"", f"to-{p}".encode())
        producer.flush()
        meta = out.wait()
        assert (meta.partition_id(), meta.offset()) == (p, 0)


def test_create_duplicate_topic_fails(cluster: Cluster) -> None:
    admin = cluster.admin()
    topic = unique_name("adm-dup")
    admin.create_topic(topic)
    with pytest.raises(Exception) as info:
        admin.create_topic(topic)
    assert "Topic already exists" in error_text(info.value)


def test_delete_missing_topic_fails(cluster: Cluster) -> None:
    admin = cluster.admin()
    with pytest.raises(Exception) as info:
        admin.delete_topic(unique_name("adm-missing"))
    assert "Topic not found" in error_text(info.value)


@pytest.mark.parametrize(
    "name",
    ["Upper-case", "under_score", "-leading-hyphen", "trailing-hyphen-", "dot.name", "x" * 64],
    ids=["upper", "underscore", "leading-hyphen", "trailing-hyphen", "dot", "too-long"],
)
def test_create_invalid_topic_name_fails(cluster: Cluster, name: str) -> None:
    admin = cluster.admin()
    with pytest.raises(Exception) as info:
        admin.create_topic(name)
    assert "Invalid topic name" in error_text(info.value)
    assert name not in topic_names(admin)


def test_longest_valid_topic_name_is_accepted(cluster: Cluster) -> None:
    admin = cluster.admin()
    name = unique_name("adm-long")
    name += "a" * (63 - len(name))
    admin.create_topic(name)
    assert name in topic_names(admin)


def test_system_topic_cannot_be_deleted_without_force(cluster: Cluster) -> None:
    """``delete_topic`` always sends force=false; ``consumer-offset`` survives and keeps working."""
    admin = cluster.admin()
    with pytest.raises(Exception) as info:
        admin.delete_topic("consumer-offset")
    assert "consumer-offset" in error_text(info.value)
    assert isinstance(cluster.connect().consumer_offsets(), list)


def test_create_dry_run_validates_without_creating(cluster: Cluster) -> None:
    """``FluvioAdmin.create_topic_with_config`` is broken in the 0.21.0 wrapper (it passes three arguments to a
    two-argument method), so this calls the native method it wraps."""
    admin = cluster.admin()
    topic = unique_name("adm-dry")
    spec = fluvio.TopicSpec.create().with_partitions(2).build()
    admin._inner.create_topic_with_config(fluvio.CommonCreateRequest.new(topic, True, 5000)._inner, spec)
    assert topic not in topic_names(admin)
    with pytest.raises(Exception) as info:
        admin._inner.create_topic_with_config(fluvio.CommonCreateRequest.new("Bad_Name", True, 5000)._inner, spec)
    assert "Invalid topic name" in error_text(info.value)
    admin._inner.create_topic_with_config(fluvio.CommonCreateRequest.new(topic, False, 5000)._inner, spec)
    assert topic in topic_names(admin)


def test_create_zero_partitions_fails(cluster: Cluster) -> None:
    admin = cluster.admin()
    topic = unique_name("adm-zero")
    with pytest.raises(Exception):
        create_topic(admin, topic, partitions=0)
    assert topic not in topic_names(admin)


def test_create_invalid_config_fails(cluster: Cluster) -> None:
    """Segment size below 1024 bytes is rejected (TopicInvalidConfiguration)."""
    admin = cluster.admin()
    topic = unique_name("adm-badcfg")
    spec = fluvio.TopicSpec.create().with_segment_size(100).build()
    with pytest.raises(Exception):
        admin.create_topic(topic, spec)
    assert topic not in topic_names(admin)


def test_create_with_retention_and_segment_size(cluster: Cluster) -> None:
    admin = cluster.admin()
    topic = unique_name("adm-cfg")
    spec = (
        fluvio.TopicSpec.create()
        .with_partitions(2)
        .with_retention_time(3600)  # the string form ("1h") gives a float the 0.21.0 binding rejects
        .with_segment_size("10M")
        .with_max_partition_size("1G")
        .build()
    )
    admin.create_topic(topic, spec)
    assert topic in topic_names(admin)


def test_delete_topic_then_recreate_starts_empty(cluster: Cluster) -> None:
    admin = cluster.admin()
    topic = unique_name("adm-del")
    admin.create_topic(topic)
    client = cluster.connect()
    assert produce_strings(client, topic, ["a", "b", "c"]) == [(0, 0), (0, 1), (0, 2)]

    admin.delete_topic(topic)
    wait_until(lambda: topic not in topic_names(admin), 10, f"{topic} to leave the topic list")
    wait_until(lambda: f"{topic}-0" not in {p.name() for p in admin.list_partitions([])}, 10,
               f"{topic}-0 to leave the partition list")

    admin.create_topic(topic)
    assert topic in topic_names(admin)
    fresh = cluster.connect()
    assert produce_strings(fresh, topic, ["again"]) == [(0, 0)]


def test_watch_topic_first_update_lists_topics(cluster: Cluster) -> None:
    """``watch_topic()`` blocks holding the GIL with no timeout, so it runs in a subprocess."""
    admin = cluster.admin()
    topic = unique_name("adm-watch")
    admin.create_topic(topic)
    code = """
admin = fluvio.FluvioAdmin.connect_with_config(config())
update = next(iter(admin.watch_topic()))
print(json.dumps({"all": [t.name() for t in update.all()], "epoch": update.epoch()}))
"""
    result = run_client_snippet(code, cluster)
    assert topic in result["all"]
    assert isinstance(result["epoch"], int)


def test_watch_topic_reports_created_and_deleted_topics(cluster: Cluster) -> None:
    """After the first frame, a create and a delete arrive as changes (UPDATE, then DELETE)."""
    topic = unique_name("adm-watch2")
    code = f"""
config = config()
watcher = fluvio.FluvioAdmin.connect_with_config(config)
other = fluvio.FluvioAdmin.connect_with_config(config)
updates = iter(watcher.watch_topic())
next(updates)
other.create_topic({topic!r})
seen = []
while not any(name == {topic!r} and kind == "update" for kind, name in seen):
    update = next(updates)
    seen += [("update" if c.is_update() else "delete", c.metadata_topic_spec().name()) for c in update.changes()]
    seen += [("update", t.name()) for t in update.all()]
other.delete_topic({topic!r})
while not any(name == {topic!r} and kind == "delete" for kind, name in seen):
    update = next(updates)
    seen += [("update" if c.is_update() else "delete", c.metadata_topic_spec().name()) for c in update.changes()]
    if update.all():
        seen += [("delete", {topic!r})] if {topic!r} not in [t.name() for t in update.all()] else []
print(json.dumps(seen))
"""
    seen = run_client_snippet(code, cluster)
    assert ["update", topic] in seen
    assert ["delete", topic] in seen
