"""SC object layouts (sc.md §5): golden bytes, version gates and decode defaults, helpers, and
property tests (round trips at every version, truncations and bit flips) for every spec/status.

The hypothesis strategies are derived from the wire types themselves (``strategy_for``), so every
field of every object is exercised; test_sc_api.py reuses them.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluvial.protocol import sc_objects as so
from fluvial.protocol.codec import (
    BOOL, BYTES, DURATION, STR, DecodeError, EncodeError, Enum, Int, Map, MessageType, Opt, Reader,
    Union, Vec,
)
from fluvial.protocol.sc_objects import (
    ALL_SPECS, CUSTOM_SPU_KEY, SEMVER, SPEC_BY_LABEL, AssignedReplicas, CompressionAlgorithm,
    ComputedReplicas, Endpoint, HomeMirrorConfig, HomePartitionConfig, IngressAddr, IngressPort,
    Metadata, MirrorReplicas, PartitionMap, PartitionSpec, PartitionStatus, RemoteMirrorConfig,
    RemotePartitionConfig, ReplicaStatus, SegmentBasedPolicy, SmartModuleMetadata,
    SmartModulePackage, SmartModuleSpec, SmartModuleStatus, SmartModuleWasm,
    SmartModuleWasmSummary, SpuMirrorConfig, SpuSpec, SpuStatus, SpuStatusResolution, SpuType,
    TopicResolution, TopicSpec, TopicStatus, TopicStorageConfig, is_semver, metadata_type,
    validate_topic_name,
)

VERSIONS = [0, 1, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]


# ------------------------------------------------------------------------------ strategies

_INT_RANGES = {"b": 8, "h": 16, "i": 32, "q": 64}
_texts = st.text(max_size=8)
_semvers = st.builds(
    lambda a, b, c, pre, build: f"{a}.{b}.{c}{pre}{build}",
    st.integers(0, 2**64 - 1), st.integers(0, 30), st.integers(0, 30),
    st.sampled_from(["", "-alpha", "-rc.1", "-0.3.7", "-x-y.z"]),
    st.sampled_from(["", "+build.5", "+001", "+exp.sha.5114f85"]))
# u64 seconds + a whole number of milliseconds: floats that survive the wire exactly.
_durations = st.builds(lambda s, ms: s + ms / 1000, st.integers(0, 10**6), st.integers(0, 999))


def strategy_for(t) -> st.SearchStrategy:
    """A strategy of valid Python values for a wire type (or ``@message`` class)."""
    if isinstance(t, type):
        t = t.WIRE_TYPE
    if t is BOOL:
        return st.booleans()
    if t is STR:
        return _texts
    if t is BYTES:
        return st.binary(max_size=12)
    if t is DURATION:
        return _durations
    if t is SEMVER:
        return _semvers
    if t is CUSTOM_SPU_KEY:
        return st.one_of(_texts, st.integers(-2**31, 2**31 - 1))
    if isinstance(t, Int):
        fmt = t.st.format[-1]
        bits = _INT_RANGES.get(fmt.lower())
        if fmt.isupper():
            return st.integers(0, 2**bits - 1)
        return st.integers(-2**(bits - 1), 2**(bits - 1) - 1)
    if isinstance(t, Opt):
        return st.none() | strategy_for(t.inner)
    if isinstance(t, Vec):
        return st.lists(strategy_for(t.inner), max_size=3)
    if isinstance(t, Map):
        return st.dictionaries(strategy_for(t.key), strategy_for(t.value), max_size=3)
    if isinstance(t, Enum):
        return st.sampled_from(list(t.cls))
    if isinstance(t, Union):
        return st.one_of([strategy_for(cls) for cls in t.variants.values()])
    if isinstance(t, MessageType):
        fields = {name: strategy_for(ft) for name, ft, _lo, _hi in t.cls.WIRE_FIELDS}
        return st.builds(t.cls, **fields)
    raise TypeError(f"no strategy for {t!r}")


def metadata_strategy(spec_cls: type) -> st.SearchStrategy:
    return st.builds(Metadata, _texts, strategy_for(spec_cls), strategy_for(spec_cls.Status))


# An object kind and a value of its spec, status or Metadata.
OBJECT_TYPES = [c for s in ALL_SPECS for c in (s, s.Status)]


def _any_object() -> st.SearchStrategy:
    return st.one_of(
        [st.tuples(st.just(c.WIRE_TYPE), strategy_for(c)) for c in OBJECT_TYPES]
        + [st.tuples(st.just(metadata_type(s)), metadata_strategy(s)) for s in ALL_SPECS])


def encode(t, v, version: int = 19) -> bytes:
    w = bytearray()
    t.encode(w, v, version)
    return bytes(w)


def decode_whole(t, data: bytes, version: int = 19):
    """Decode ``data`` and insist that it was consumed exactly."""
    r = Reader(data)
    v = t.decode(r, version)
    assert r.pos == len(data)
    return v


def check_three_ways(t, data: bytes, expected, version: int = 19) -> None:
    """Whole; every strict prefix raises DecodeError; trailing bytes are left unread."""
    assert decode_whole(t, data, version) == expected
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            t.decode(Reader(data[:cut]), version)
    r = Reader(data + b"\x01\xff\x00")
    assert t.decode(r, version) == expected
    assert r.pos == len(data)


# ------------------------------------------------------------------------ golden objects

# sc.md §8.4 / §8.9: Metadata<TopicSpec> "demo", from the name to the final reason.
TOPIC_DEMO_HEX = ("0004 64656d6f" "01 00000001 00000001 01" "00" "00" "04" "00" "00"
                  "04" "0001 00000000 00000001 00001389" "0000" "0000")
TOPIC_DEMO = Metadata("demo", TopicSpec(ComputedReplicas(1, 1, True)),
                      TopicStatus(TopicResolution.Provisioned, {0: [5001]}, {}, ""))

# sc.md §8.3: Metadata<PartitionSpec> "demo-0" (72 bytes).
PARTITION_DEMO_HEX = ("0006 64656d6f2d30" "00001389" "00000001 00001389" "00 00 04 00 00 00"
                      "01" "00001389 0000000000000000 0000000000000000" "00000000" "00000000"
                      "0000000000000000" "00" "0000000000000000")
PARTITION_DEMO = Metadata(
    "demo-0", PartitionSpec(5001, [5001]),
    PartitionStatus(so.PartitionResolution.Online, ReplicaStatus(5001, 0, 0), 0, [], 0, False, 0))

# sc.md §8.2: Metadata<SpuSpec> "custom-spu-5001".
SPU_HEX = ("000f 637573746f6d2d7370752d35303031" "00001389" "01" "2332" "00000001"
           "01 0009 3132372e302e302e31" "00" "00" "2333" "0009 3132372e302e302e31" "00" "00"
           "00" "00")
SPU = Metadata(
    "custom-spu-5001",
    SpuSpec(5001, SpuType.Custom, IngressPort(9010, [IngressAddr("127.0.0.1", None)]),
            Endpoint(9011, "127.0.0.1")),
    SpuStatus(SpuStatusResolution.Online))

# sc.md §8.10: Metadata<SmartModuleSpec> "mysm", status = zero bytes.
SM_HEX = "0004 6d79736d" "00" "00" "00" "00000008 0061736d01000000"
SM = Metadata("mysm", SmartModuleSpec(None, None, SmartModuleWasm(payload=b"\x00asm\x01\x00\x00\x00")),
              SmartModuleStatus())


@pytest.mark.parametrize("spec_cls,hexstr,value", [
    (TopicSpec, TOPIC_DEMO_HEX, TOPIC_DEMO),
    (PartitionSpec, PARTITION_DEMO_HEX, PARTITION_DEMO),
    (SpuSpec, SPU_HEX, SPU),
    (SmartModuleSpec, SM_HEX, SM),
], ids=["topic", "partition", "spu", "smartmodule"])
def test_validated_metadata_bytes(spec_cls, hexstr, value):
    data = bytes.fromhex(hexstr.replace(" ", ""))
    t = metadata_type(spec_cls)
    assert encode(t, value) == data
    check_three_ways(t, data, value)


def test_partition_metadata_is_72_bytes_as_documented():
    assert len(encode(metadata_type(PartitionSpec), PARTITION_DEMO)) == 72


def test_captured_topic_spec_with_retention_storage_and_system():
    # sc.md §8.7, t-ret: Computed{2,1,true}, Segment{3600}, storage {2000000, 20000000}, Any, system.
    data = bytes.fromhex("01 00000002 00000001 01" "01 00 00000e10"
                         "01 01 001e8480 01 0000000001312d00" "04" "00" "01".replace(" ", ""))
    spec = TopicSpec(ComputedReplicas(2, 1, True), SegmentBasedPolicy(3600),
                     TopicStorageConfig(2000000, 20000000), CompressionAlgorithm.Any, None, True)
    check_three_ways(TopicSpec.WIRE_TYPE, data, spec)
    assert spec.encode(19) == data
    assert spec.retention_secs() == 3600 and spec.validate_config() is None


def test_captured_assigned_topic_spec():
    data = bytes.fromhex("00 00000001 00000000 00000001 00001389 00" "00 00 04 00 00".replace(" ", ""))
    spec = TopicSpec(AssignedReplicas([PartitionMap(0, [5001])]))
    check_three_ways(TopicSpec.WIRE_TYPE, data, spec)
    assert spec.partition_count() == 1 and spec.replication_factor() == 1


def test_smartmodule_status_is_zero_bytes():
    assert SmartModuleStatus().encode(19) == b""
    assert SmartModuleStatus.decode(b"", 19) == SmartModuleStatus()


# ------------------------------------------------------------------ gates and defaults


def test_topic_spec_gates_and_decode_defaults():
    spec = TopicSpec(ComputedReplicas(3, 2, False), SegmentBasedPolicy(60), TopicStorageConfig(2048, None),
                     CompressionAlgorithm.Zstd, None, True)
    # v2: only replicas; the absent fields take Fluvio's defaults (compression Any, not None).
    assert spec.encode(2) == bytes.fromhex("01000000030000000200")
    assert TopicSpec.decode(spec.encode(2), 2) == TopicSpec(ComputedReplicas(3, 2, False))
    assert TopicSpec.decode(spec.encode(2), 2).compression_type is CompressionAlgorithm.Any
    assert TopicSpec.decode(spec.encode(5), 5).storage == TopicStorageConfig(2048, None)
    assert TopicSpec.decode(spec.encode(6), 6).compression_type is CompressionAlgorithm.Zstd
    assert TopicSpec.decode(spec.encode(12), 12).system is False
    assert TopicSpec.decode(spec.encode(13), 13) == spec


def test_partition_status_defaults_size_minus_two_and_replica_status_minus_one():
    status = PartitionStatus(so.PartitionResolution.Online, ReplicaStatus(1, 5, 6), 0, [], 100, False, 7)
    assert PartitionStatus.decode(status.encode(4), 4).size == so.SIZE_NOT_SUPPORTED == -2
    assert PartitionStatus.decode(status.encode(15), 15).base_offset == 0
    assert PartitionStatus.decode(status.encode(16), 16) == status
    assert ReplicaStatus() == ReplicaStatus(-1, -1, -1)
    assert PartitionStatus().leader == ReplicaStatus(-1, -1, -1)


def test_endpoint_and_spu_defaults():
    assert Endpoint() == Endpoint(0, "127.0.0.1", so.EncryptionEnum.PLAINTEXT)
    assert SpuSpec().private_endpoint.host == "127.0.0.1"
    assert SpuStatus().resolution is SpuStatusResolution.Init
    spu = dataclasses.replace(SPU.spec, public_endpoint_local=Endpoint(7000, "10.0.0.1"))
    assert SpuSpec.decode(spu.encode(0), 0).public_endpoint_local is None
    assert SpuSpec.decode(spu.encode(1), 1) == spu


def test_partition_map_mirror_gate_and_mirror_target_gate():
    remote = RemotePartitionConfig("home", "spu-1", 1, "h:1", True)
    pm = PartitionMap(0, [1], remote)
    assert PartitionMap.decode(pm.encode(13), 13).mirror is None
    assert PartitionMap.decode(pm.encode(17), 17).mirror == dataclasses.replace(remote, target=False)
    assert PartitionMap.decode(pm.encode(18), 18) == pm


def test_variant_min_version_is_ignored_as_in_fluvio():
    # ReplicaSpec::Mirror declares min_version 14 on the variant; it still encodes at v12.
    spec = TopicSpec(MirrorReplicas(HomeMirrorConfig([HomePartitionConfig("r", "t-0")])))
    assert TopicSpec.decode(spec.encode(12), 12).replicas == spec.replicas
    status = PartitionStatus(so.PartitionResolution.OutOfStorage)
    assert PartitionStatus.decode(status.encode(11), 11).resolution is so.PartitionResolution.OutOfStorage


def test_mirror_pair_status_detail_failure_and_mirror_spec():
    status = so.MirrorStatus(so.ConnectionStatus.Online, so.MirrorPairDetailFailure("bad cert"),
                             so.MirrorPairSuccessful(), so.ConnectionStat(1713902927812))
    data = status.encode(19)
    assert data == bytes.fromhex("01" "05 0008 6261642063657274" "01" "0000018f0c933fc4".replace(" ", ""))
    check_three_ways(so.MirrorStatus.WIRE_TYPE, data, status)
    spec = so.MirrorSpec(so.MirrorHome("h", "r", "e:1", so.ClientTls("d", "ca", "c", "k")))
    assert spec.encode(19) == bytes.fromhex(
        "01 0001 68 0001 72 0003 653a31 01 0001 64 0002 6361 0001 63 0001 6b".replace(" ", ""))
    assert "k" not in repr(spec.mirror_type.client_tls)


def test_spu_group_layout():
    spec = so.SpuGroupSpec(3, 5000, so.SpuConfig("r1", so.ReplicationConfig(2),
                                                so.StorageConfig("/d", None), [so.EnvVar("A", "b")]))
    data = bytes.fromhex("0003 00001388 01 0002 7231 01 01 0002 01 01 0002 2f64 00 00000001 0001 41 0001 62"
                         .replace(" ", ""))
    check_three_ways(so.SpuGroupSpec.WIRE_TYPE, data, spec)
    check_three_ways(so.SpuGroupStatus.WIRE_TYPE, bytes.fromhex("0201000178"),
                     so.SpuGroupStatus(so.SpuGroupStatusResolution.Reserved, "x"))


def test_table_format_layout():
    spec = so.TableFormatSpec("tf", so.DataFormat.JSON, [so.TableFormatColumnConfig(
        key_path="k", alignment=so.TableFormatAlignment.Center, header_bg_color=so.Color.Green)], None)
    data = bytes.fromhex("0002 7466 01 00 01 00000001 00 00 01 02 0001 6b 00 00 00 01 02 00 00"
                         .replace(" ", ""))
    check_three_ways(so.TableFormatSpec.WIRE_TYPE, data, spec)
    check_three_ways(so.TableFormatStatus.WIRE_TYPE, bytes.fromhex("0200"),
                     so.TableFormatStatus(so.TableFormatStatusResolution.Running, None))


# ----------------------------------------------------------------- CustomSpu and its key


def test_custom_spu_key_is_string_tagged():
    check_three_ways(CUSTOM_SPU_KEY, bytes.fromhex("00044e616d65 0003 737075".replace(" ", "")), "spu")
    check_three_ways(CUSTOM_SPU_KEY, bytes.fromhex("00024964 00001389".replace(" ", "")), 5001)
    with pytest.raises(DecodeError, match="invalid spec type 'Nope'"):
        CUSTOM_SPU_KEY.decode(Reader(bytes.fromhex("00044e6f7065 00000001".replace(" ", ""))), 19)
    with pytest.raises(EncodeError):
        encode(CUSTOM_SPU_KEY, 1.5)
    assert CUSTOM_SPU_KEY.default() == 0


def test_custom_spu_spec_has_no_type_and_no_gate():
    spec = so.CustomSpuSpec(7, IngressPort(9010, [IngressAddr(None, "10.0.0.7")]), Endpoint(9011),
                            None, Endpoint(9999, "localhost"))
    assert spec.encode(0) == spec.encode(19)
    assert so.CustomSpuSpec.decode(spec.encode(0), 0) == spec
    assert so.CustomSpuSpec.Status is SpuStatus


# ---------------------------------------------------------------------------- SmartModule


def test_smartmodule_package_requires_strict_semver():
    pkg = SmartModulePackage("m", "g", "1.2.3-rc.1+b7", "0.1.0", None, None,
                             so.SmartModuleVisibility.Public, "repo")
    assert SmartModulePackage.decode(pkg.encode(19), 19) == pkg
    assert SmartModulePackage.decode(pkg.encode(18), 18).visibility is so.SmartModuleVisibility.Private
    bad = bytearray(pkg.encode(19))
    at = bad.index(b"1.2.3")
    bad[at:at + 5] = b"1.2.x"
    with pytest.raises(DecodeError, match="not a valid semantic version"):
        SmartModulePackage.decode(bytes(bad), 19)
    with pytest.raises(EncodeError):
        dataclasses.replace(pkg, version="1.2").encode(19)


@pytest.mark.parametrize("text,ok", [
    ("0.1.0", True), ("1.2.3-alpha.1+build.01", True), ("1.0.0-0.3.7", True), ("1.0.0+001", True),
    ("1.2", False), ("01.2.3", False), ("1.2.3-01", False), ("1.2.3-", False), ("1.2.3+", False),
    ("v1.2.3", False), (" 1.2.3", False), ("1.2.3\n", False), ("1.2.٣", False),
    (f"{2**64}.0.0", False), (f"{2**64 - 1}.0.0", True),
])
def test_is_semver(text, ok):
    assert is_semver(text) is ok


def test_smartmodule_summary_form_and_store_id():
    meta = SmartModuleMetadata(SmartModulePackage("m", "g", "1.0.0", "0.1.0"), {})
    spec = SmartModuleSpec(meta, None, SmartModuleWasm(payload=b"x" * 10))
    assert spec.summarized() == SmartModuleSpec(meta, SmartModuleWasmSummary(10), SmartModuleWasm())
    assert spec.store_id("ignored") == "m-g-1.0.0"
    assert SmartModuleSpec().store_id("plain") == "plain"
    assert spec.fqdn("x") == "g/m@1.0.0"
    assert Metadata("m", spec).summarized().spec.summary == SmartModuleWasmSummary(10)
    assert Metadata("demo", TOPIC_DEMO.spec).summarized().spec is TOPIC_DEMO.spec


def test_smartmodule_spec_v1_layout_below_version_10():
    spec = SmartModuleSpec(None, None, SmartModuleWasm(so.SmartModuleWasmFormat.Text, b"ab"))
    data = bytes.fromhex("000000" "01 00000002 6162" "00".replace(" ", ""))
    assert spec.encode(9) == data
    check_three_ways(SmartModuleSpec.WIRE_TYPE, data, spec, version=9)
    # V1 carries source code and parameters, which are read and dropped.
    full = bytes.fromhex("01 02 01 00 0002 7273 00 00000000 01 00000001 0001 70".replace(" ", ""))
    check_three_ways(SmartModuleSpec.WIRE_TYPE, full, SmartModuleSpec(), version=9)
    with pytest.raises(DecodeError, match="SmartModuleOutputKind"):
        SmartModuleSpec.decode(bytes.fromhex("0003"), 9)


# -------------------------------------------------------------------- topic helpers


@pytest.mark.parametrize("name,reason", [
    ("demo", None), ("a-1-b", None), ("0", None), ("", None), ("a" * 63, None),
    ("a" * 64, "Name exceeds max characters allowed 63"),
    ("é" * 32, "Name exceeds max characters allowed 63"),
    ("Demo", "Contain only lowercase alphanumeric characters or '-'"),
    ("-demo", "Contain only lowercase alphanumeric characters or '-'"),
    ("demo-", "Contain only lowercase alphanumeric characters or '-'"),
    ("de_mo", "Contain only lowercase alphanumeric characters or '-'"),
    ("de mo", "Contain only lowercase alphanumeric characters or '-'"),
    ("dé", "Contain only lowercase alphanumeric characters or '-'"),
])
def test_validate_topic_name(name, reason):
    assert validate_topic_name(name) == reason


@pytest.mark.parametrize("cleanup,storage,reason", [
    (None, None, None),
    (SegmentBasedPolicy(10), TopicStorageConfig(1024, 2048), None),
    (SegmentBasedPolicy(9), None, "retention_secs 9 is less than minimum 10"),
    (None, TopicStorageConfig(1023, None), "segment_size 1023 is less than minimum 1024"),
    (None, TopicStorageConfig(None, 2047), "max_partition_size 2047 is less than minimum 2048"),
    (None, TopicStorageConfig(4096, 4095), "max_partition_size 4095 is less than segment size 4096"),
    (None, TopicStorageConfig(None, 1073741823),
     "max_partition_size 1073741823 is less than segment size 1073741824"),
    (None, TopicStorageConfig(None, 1073741824), None),
])
def test_validate_config(cleanup, storage, reason):
    assert TopicSpec.computed(1, cleanup_policy=cleanup, storage=storage).validate_config() == reason


@pytest.mark.parametrize("replicas,reason", [
    (ComputedReplicas(1, 1, False), None),
    (ComputedReplicas(0, 1, False), "partition must be greater than 0"),
    (ComputedReplicas(1, 0, False), "replication factor must be greater than 0"),
    (AssignedReplicas([PartitionMap(0, [1, 2]), PartitionMap(1, [2, 3])]), None),
    (AssignedReplicas([]), "no assigned partitions found"),
    (AssignedReplicas([PartitionMap(1, [1])]), "assigned partitions must start with id 0"),
    (AssignedReplicas([PartitionMap(0, [])]), "assigned replicas must have at least one spu id"),
    (AssignedReplicas([PartitionMap(0, [1]), PartitionMap(2, [1])]),
     "assigned partition ids must be in sequence and without gaps"),
    (AssignedReplicas([PartitionMap(0, [1]), PartitionMap(1, [1, 2])]),
     "all assigned replicas must have the same number of spu ids: 1"),
    (AssignedReplicas([PartitionMap(0, [1, 1])]), "duplicate spu ids found in assigned partition with id: 0"),
    (AssignedReplicas([PartitionMap(0, [-1])]), "invalid spu id: -1 in assigned partition with id: 0"),
    (MirrorReplicas(RemoteMirrorConfig("h", [])), None),
])
def test_replica_spec_validate(replicas, reason):
    assert replicas.validate() == reason


def test_replica_spec_counts_and_mirror_partition_maps():
    assert ComputedReplicas(3, 2, False).partition_count() == 3
    assert ComputedReplicas(3, 2, False).replicas_per_partition() == 2
    assert AssignedReplicas([]).replicas_per_partition() is None
    spus = [SpuMirrorConfig(1, "k1", "e1"), SpuMirrorConfig(2, "k2", "e2")]
    remote = RemoteMirrorConfig("home", spus, True)
    spec = TopicSpec(MirrorReplicas(remote))
    assert spec.partition_count() == 2 and spec.replication_factor() is None
    assert remote.as_partition_maps()[1] == PartitionMap(
        1, [], RemotePartitionConfig("home", "k2", 2, "e2", True))
    home = HomeMirrorConfig([HomePartitionConfig("r1", "t-0")])
    assert MirrorReplicas(home).as_partition_maps() == [PartitionMap(0, [], HomePartitionConfig("r1", "t-0"))]
    assert TopicSpec.computed(1).retention_secs() == 7 * 24 * 3600


def test_partition_spec_from_replicas_copies_the_topic_settings():
    topic = TopicSpec.computed(2, 2, cleanup_policy=SegmentBasedPolicy(60),
                               compression_type=CompressionAlgorithm.Gzip, system=True)
    p = PartitionSpec.from_replicas([5002, 5001], topic)
    assert (p.leader, p.replicas, p.cleanup_policy, p.compression_type, p.system) == (
        5002, [5002, 5001], SegmentBasedPolicy(60), CompressionAlgorithm.Gzip, True)
    assert p.followers() == [5001]
    assert PartitionSpec.from_replicas([], topic).leader == 0


def test_spu_addresses():
    spu = SPU.spec
    assert spu.public_addr() == "127.0.0.1:9010"
    assert dataclasses.replace(spu, public_endpoint_local=Endpoint(7, "lo")).public_addr(True) == "lo:7"
    assert spu.public_addr(use_local=True) == "127.0.0.1:9010"
    assert IngressPort(5, [IngressAddr(None, "1.2.3.4")]).addr() == "1.2.3.4:5"
    assert IngressPort(5, []).addr() == ":5"


def test_labels_and_status_classes():
    assert {c.LABEL for c in ALL_SPECS} == {"Topic", "Partition", "SPU", "SmartModule", "TableFormat",
                                            "SpuGroup", "CustomSpu", "Mirror", "Processor"}
    assert all(SPEC_BY_LABEL[c.LABEL] is c for c in ALL_SPECS)
    assert TopicSpec.Status is TopicStatus and SmartModuleSpec.Status is SmartModuleStatus
    assert so.MirrorSpec.Status is so.MirrorStatus and so.SpuGroupSpec.Status is so.SpuGroupStatus


def test_metadata_type_checks_the_kind_when_encoding():
    with pytest.raises(EncodeError):
        encode(metadata_type(TopicSpec), PARTITION_DEMO)
    assert metadata_type(TopicSpec) is metadata_type(TopicSpec)
    assert Metadata("x", TopicSpec()).status == TopicStatus()


def test_unknown_enum_and_union_tags_are_decode_errors():
    with pytest.raises(DecodeError, match="Unknown ReplicaSpec type 3"):
        TopicSpec.decode(b"\x03", 19)
    with pytest.raises(DecodeError, match="Unknown CompressionAlgorithm type 6"):
        TopicSpec.decode(bytes.fromhex("01000000010000000101" "0000" "06"), 19)
    with pytest.raises(DecodeError, match="Unknown SpuStatusResolution type 3"):
        SpuStatus.decode(b"\x03", 19)


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_object())
def test_every_object_round_trips_at_version_19(case):
    t, value = case
    data = encode(t, value)
    assert decode_whole(t, data) == value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_object(), st.sampled_from(VERSIONS))
def test_every_object_reencodes_identically_at_every_version(case, version):
    t, value = case
    data = encode(t, value, version)
    again = decode_whole(t, data, version)
    assert encode(t, again, version) == data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_object(), st.data())
def test_every_strict_prefix_of_an_object_fails(case, data):
    t, value = case
    encoded = encode(t, value)
    if not encoded:
        return  # SmartModuleStatus: zero bytes, nothing to cut
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        t.decode(Reader(encoded[:cut]), 19)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_object(), st.data())
def test_bit_flipped_objects_decode_or_raise_decode_error(case, data):
    t, value = case
    encoded = bytearray(encode(t, value))
    if not encoded:
        return
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        t.decode(Reader(bytes(encoded)), 19)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(OBJECT_TYPES + [metadata_type(s) for s in ALL_SPECS]), st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error(t, junk):
    t = t if not isinstance(t, type) else t.WIRE_TYPE
    try:
        t.decode(Reader(junk), 19)
    except DecodeError:
        pass
