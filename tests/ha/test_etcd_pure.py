"""The pure halves of fluvial.sc.etcd and fluvial.sc.election: request bodies, the save plan,
folding watched events, the lease clock. No etcd needed."""

from __future__ import annotations

import json

import pytest

from fluvial.metadata.store import StoredObject
from fluvial.protocol import sc_objects as so
from fluvial.sc.election import ACT_FRACTION, Holding, LeaseClock, campaign_result, campaign_txn
from fluvial.sc.etcd import (EtcdBackend, Kv, WatchEvent, b64, decode_watch_line, mod_is,
                             parse_endpoints, prefix_end)


def _topic(name: str, partitions: int = 1) -> StoredObject:
    return StoredObject(name, so.TopicSpec.computed(partitions, 1), so.TopicStatus(), epoch=7)


def _backend() -> EtcdBackend:
    b = EtcdBackend(client=None, prefix="/p")
    b._kinds["Topic"] = (so.TopicSpec, so.TopicStatus, None)
    return b


def test_parse_endpoints():
    assert parse_endpoints("etcd://a:1,b:2") == [("a", 1), ("b", 2)]
    assert parse_endpoints("127.0.0.1:2379") == [("127.0.0.1", 2379)]
    for bad in ("etcd://a", "etcd://:1", "etcd://a:1,,b:2"):
        with pytest.raises(ValueError):
            parse_endpoints(bad)


def test_prefix_end_is_the_next_key():
    assert prefix_end("/p/meta/") == "/p/meta0"


def test_a_new_object_is_put_only_if_absent():
    b = _backend()
    compare, ops, writes = b.plan({"Topic": [_topic("a")]})
    assert compare == [mod_is("/p/meta/Topic/a", 0)]
    assert list(ops[0]) == ["request_put"] and ops[0]["request_put"]["key"] == b64("/p/meta/Topic/a")
    assert set(writes) == {"/p/meta/Topic/a"}


def test_a_change_is_guarded_by_the_revision_last_seen_and_the_guard():
    b = _backend()
    key = b.key("Topic", "a")
    b.known[key] = (b.encode(_topic("a")), 41)
    # the same content (whatever the local epoch stamp): nothing to write
    assert b.plan({"Topic": [StoredObject("a", _topic("a").spec, so.TopicStatus(), epoch=99)]})[1] == []
    b.guard = Holding("/p/controller", 5, 1).guard()
    compare, ops, _ = b.plan({"Topic": [_topic("a", 3)]})
    assert compare == [*b.guard, mod_is(key, 41)]
    assert "request_put" in ops[0]


def test_a_missing_object_is_deleted_guarded_by_its_revision():
    b = _backend()
    b.known[b.key("Topic", "gone")] = (b.encode(_topic("gone")), 12)
    b.known[b.key("Topic", "was-deleted")] = (None, 13)
    compare, ops, writes = b.plan({"Topic": []})
    assert compare == [mod_is(b.key("Topic", "gone"), 12)]
    assert ops == [{"request_delete_range": {"key": b64(b.key("Topic", "gone"))}}]
    assert writes == {b.key("Topic", "gone"): None}


def test_accept_skips_what_this_sc_has_seen_and_keeps_order():
    b = _backend()
    key = b.key("Topic", "a")
    value = b.encode(_topic("a"))
    b.known[key] = (value, 20)
    assert b.accept([WatchEvent(Kv(key, value, 20, 20), False)]) == []  # our own write
    assert b.accept([WatchEvent(Kv(key, value, 19, 19), False)]) == []  # older
    newer = b.accept([WatchEvent(Kv(key, b.encode(_topic("a", 2)), 21, 20), False)])
    assert [(c.label, c.name, c.obj.spec.replicas) for c in newer] == [("Topic", "a", _topic("a", 2).spec.replicas)]
    gone = b.accept([WatchEvent(Kv(key, b"", 22, 0), True)])
    assert [(c.name, c.obj) for c in gone] == [("a", None)]
    # a stale create after our delete does not bring it back
    assert b.accept([WatchEvent(Kv(key, value, 21, 20), False)]) == []
    assert b.known[key] == (None, 22)


def test_decode_watch_line():
    line = json.dumps({"result": {"header": {"revision": "9"}, "events": [
        {"type": "DELETE", "kv": {"key": b64("/k"), "mod_revision": "9"}},
        {"kv": {"key": b64("/j"), "value": b64(b"v"), "mod_revision": "9", "create_revision": "3"}}]}})
    events, rev, canceled = decode_watch_line(line.encode())
    assert rev == 9 and not canceled
    assert [(e.kv.key, e.deleted, e.kv.value) for e in events] == [("/k", True, b""), ("/j", False, b"v")]


def test_campaign_only_creates_an_absent_key_and_holds_its_revision():
    compare, success, failure = campaign_txn("/p/controller", "sc-a", 77)
    assert compare == [{"key": b64("/p/controller"), "target": "CREATE", "result": "EQUAL",
                        "create_revision": "0"}]
    assert success[0]["request_put"]["lease"] == "77"
    assert campaign_result("/p/controller", 77, False, {}) is None
    held = campaign_result("/p/controller", 77, True, {"header": {"revision": "31"}})
    assert held == Holding("/p/controller", 31, 77)
    assert held.guard()[0]["create_revision"] == "31"


def test_lease_clock_stops_acting_before_the_lease_can_expire():
    clock = LeaseClock(ttl=3.0)
    assert not clock.may_act(0.0)  # never renewed
    clock.renewed(10.0)
    assert clock.acting_until == pytest.approx(10.0 + ACT_FRACTION * 3.0)
    assert clock.may_act(12.0) and not clock.may_act(12.1)
    clock.renewed(9.0)  # an older answer arriving late does not extend it
    assert clock.acting_until == pytest.approx(12.1)
    assert clock.acting_until < 10.0 + 3.0  # etcd expires it no sooner than here


def test_resync_after_a_compaction_finds_new_changed_and_deleted_objects():
    b = _backend()
    kept, changed, gone = (b.key("Topic", n) for n in ("kept", "changed", "gone"))
    b.known = {kept: (b.encode(_topic("kept")), 5), changed: (b.encode(_topic("changed")), 6),
               gone: (b.encode(_topic("gone")), 7)}
    fresh = [Kv(kept, b.encode(_topic("kept")), 5, 5), Kv(changed, b.encode(_topic("changed", 2)), 30, 6),
             Kv(b.key("Topic", "new"), b.encode(_topic("new")), 31, 31)]
    out = {c.name: c.obj for c in b.resync(fresh, 40)}
    assert set(out) == {"changed", "new", "gone"} and out["gone"] is None
    assert b.known[gone] == (None, 40)


def test_an_object_read_back_encodes_to_the_same_bytes():
    """A standby saves the objects it read from etcd unchanged: its plan must not see them as
    changed (or every save would rewrite, and race on, keys it never touched)."""
    from fluvial.metadata.replication import PartitionReplication
    from fluvial.sc.state import META_READERS

    b = _backend()
    b._kinds["Partition"] = (so.PartitionSpec, so.PartitionStatus, META_READERS["Partition"])
    spec = so.PartitionSpec(5001, [5001, 5002], so.SegmentBasedPolicy(3600),
                            so.TopicStorageConfig(1000, 2000), so.CompressionAlgorithm.Any, None, False)
    status = so.PartitionStatus(so.PartitionResolution.Online, so.ReplicaStatus(5001, 10, 12), 1,
                                [so.ReplicaStatus(5002, 10, 11)], 99, False, 0)
    obj = StoredObject("t-0", spec, status, epoch=3, meta=PartitionReplication(7, 4, (5001, 5002), 2))
    key = b.key("Partition", "t-0")
    b.known[key] = (b.encode(obj), 10)
    back = b.decode("Partition", "t-0", b.known[key][0])
    assert back.meta == obj.meta and back.spec == spec
    assert b.plan({"Partition": [back]})[1] == []
