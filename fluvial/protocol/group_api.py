"""Consumer-group requests: fluvial's own keys on the SPU public port (7101-7107).

Fluvio has no consumer groups, so these keys are fluvial's. They are served by the SPU that leads
``consumer-offset``-0 (the group coordinator, ``fluvial.spu.group_coordinator``); any other SPU
answers ``NOT_COORDINATOR``. They are decoded on the SPU public port but not advertised in its
ApiVersions answer, so the official client sees exactly Fluvio's keys. Every response starts with
``error: i16`` (``fluvial.metadata.group.GroupError``) and ``message: String``.

    JoinGroup      7101  group, member_id, client_id, host, topic, partitions: u32,
                         session_timeout_ms: u32, start ("earliest" | "latest")
                   ->    error, message, generation: i32
    Heartbeat      7102  group, member_id, owned: [u32], wait_ms: u32
                   ->    error, message, generation, assigned: [u32], start,
                         offsets: [GroupOffset]   (committed next offset of assigned partitions)
    LeaveGroup     7103  group, member_id                          -> error, message
    CommitOffsets  7104  group, member_id, generation: i32, topic, offsets: [GroupOffset]
                   ->    error, message, results: [PartitionResult]
    DescribeGroups 7105  group: Option<String> (None: every group)  -> error, message, [GroupInfo]
    DeleteGroup    7106  group                                     -> error, message
    SetOffsets     7107  group, topic, offsets: [GroupOffset]      -> error, message

Heartbeat is a long poll: when nothing is pending for the member, the coordinator holds it up to
``wait_ms`` or until the group changes, so a rebalance reaches members in one round trip.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from fluvial.protocol.api import Request
from fluvial.protocol.codec import I16, I32, I64, STR, U32, Opt, Vec, message, wire


class GroupApiKey(IntEnum):
    JoinGroup = 7101
    Heartbeat = 7102
    LeaveGroup = 7103
    CommitOffsets = 7104
    DescribeGroups = 7105
    DeleteGroup = 7106
    SetOffsets = 7107


class GroupRequest(Request):
    DEFAULT_API_VERSION: ClassVar[int] = 0
    MIN_API_VERSION: ClassVar[int] = 0
    MAX_API_VERSION: ClassVar[int] = 0


@message
class GroupOffset:
    partition: int = wire(U32)
    offset: int = wire(I64)


@message
class PartitionResult:
    partition: int = wire(U32)
    error: int = wire(I16)
    message: str = wire(STR)


@message
class JoinGroupResponse:
    error: int = wire(I16)
    message: str = wire(STR)
    generation: int = wire(I32)


@message
class JoinGroupRequest(GroupRequest):
    API_KEY: ClassVar[int] = GroupApiKey.JoinGroup
    Response: ClassVar[type] = JoinGroupResponse

    group: str = wire(STR)
    member_id: str = wire(STR)
    client_id: str = wire(STR)
    host: str = wire(STR)
    topic: str = wire(STR)
    partitions: int = wire(U32)
    session_timeout_ms: int = wire(U32)
    start: str = wire(STR)


@message
class HeartbeatResponse:
    error: int = wire(I16)
    message: str = wire(STR)
    generation: int = wire(I32)
    assigned: list[int] = wire(Vec(U32))
    start: str = wire(STR)
    offsets: list[GroupOffset] = wire(Vec(GroupOffset))


@message
class HeartbeatRequest(GroupRequest):
    API_KEY: ClassVar[int] = GroupApiKey.Heartbeat
    Response: ClassVar[type] = HeartbeatResponse

    group: str = wire(STR)
    member_id: str = wire(STR)
    owned: list[int] = wire(Vec(U32))
    wait_ms: int = wire(U32)


@message
class LeaveGroupResponse:
    error: int = wire(I16)
    message: str = wire(STR)


@message
class LeaveGroupRequest(GroupRequest):
    API_KEY: ClassVar[int] = GroupApiKey.LeaveGroup
    Response: ClassVar[type] = LeaveGroupResponse

    group: str = wire(STR)
    member_id: str = wire(STR)


@message
class CommitOffsetsResponse:
    error: int = wire(I16)
    message: str = wire(STR)
    results: list[PartitionResult] = wire(Vec(PartitionResult))


@message
class CommitOffsetsRequest(GroupRequest):
    API_KEY: ClassVar[int] = GroupApiKey.CommitOffsets
    Response: ClassVar[type] = CommitOffsetsResponse

    group: str = wire(STR)
    member_id: str = wire(STR)
    generation: int = wire(I32)
    topic: str = wire(STR)
    offsets: list[GroupOffset] = wire(Vec(GroupOffset))


@message
class MemberInfo:
    member_id: str = wire(STR)
    client_id: str = wire(STR)
    host: str = wire(STR)
    assigned: list[int] = wire(Vec(U32))


@message
class CommittedOffset:
    topic: str = wire(STR)
    partition: int = wire(U32)
    offset: int = wire(I64)


@message
class GroupInfo:
    name: str = wire(STR)
    topic: str = wire(STR)
    generation: int = wire(I32)
    members: list[MemberInfo] = wire(Vec(MemberInfo))
    offsets: list[CommittedOffset] = wire(Vec(CommittedOffset))


@message
class DescribeGroupsResponse:
    error: int = wire(I16)
    message: str = wire(STR)
    groups: list[GroupInfo] = wire(Vec(GroupInfo))


@message
class DescribeGroupsRequest(GroupRequest):
    API_KEY: ClassVar[int] = GroupApiKey.DescribeGroups
    Response: ClassVar[type] = DescribeGroupsResponse

    group: str | None = wire(Opt(STR))


@message
class DeleteGroupResponse:
    error: int = wire(I16)
    message: str = wire(STR)


@message
class DeleteGroupRequest(GroupRequest):
    API_KEY: ClassVar[int] = GroupApiKey.DeleteGroup
    Response: ClassVar[type] = DeleteGroupResponse

    group: str = wire(STR)


@message
class SetOffsetsResponse:
    error: int = wire(I16)
    message: str = wire(STR)


@message
class SetOffsetsRequest(GroupRequest):
    API_KEY: ClassVar[int] = GroupApiKey.SetOffsets
    Response: ClassVar[type] = SetOffsetsResponse

    group: str = wire(STR)
    topic: str = wire(STR)
    offsets: list[GroupOffset] = wire(Vec(GroupOffset))


GROUP_REQUESTS: dict[int, type] = {
    cls.API_KEY: cls
    for cls in (JoinGroupRequest, HeartbeatRequest, LeaveGroupRequest, CommitOffsetsRequest,
                DescribeGroupsRequest, DeleteGroupRequest, SetOffsetsRequest)
}
"""Request class per group api key (served beside ``spu_api.SPU_REQUESTS``, not advertised)."""
