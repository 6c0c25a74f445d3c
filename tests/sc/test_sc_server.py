"""The SC's public API against an in-process cluster: objects, watch semantics, restart."""

from __future__ import annotations

import struct

import trio

from fluvial.errors import ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from harness.cluster import open_test_cluster


async def sc_conn(cluster):
    host, port = cluster.endpoint.split(":")
    return open_connection(host, int(port))


async def test_create_list_delete_topic_and_errors(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=2) as cluster:
            async with await sc_conn(cluster) as sc:
                versions = await sc.handshake()
                assert versions.platform_version == "0.17.3"
                ok = await sc.call(sa.ObjectApiCreateRequest.of("demo", so.TopicSpec.computed(3, 2)))
                assert ok.error_code.ok
                dup = await sc.call(sa.ObjectApiCreateRequest.of("demo", so.TopicSpec.computed(1)))
                assert dup.error_code.code == ErrorCode.TopicAlreadyExists
                bad = await sc.call(sa.ObjectApiCreateRequest.of("Bad_Name", so.TopicSpec.computed(1)))
                assert bad.error_code.code == ErrorCode.TopicInvalidName
                big = await sc.call(sa.ObjectApiCreateRequest.of("big", so.TopicSpec.computed(1, 3)))
                assert big.error_code.code == ErrorCode.TopicError and "3" in big.error_message
                topics = await sc.call(sa.ObjectApiListRequest.of(so.TopicSpec))
                assert [m.name for m in topics.items] == ["demo"]  # consumer-offset is a system topic
                system = await sc.call(sa.ObjectApiListRequest.of(so.TopicSpec, system=True))
                assert [m.name for m in system.items] == ["consumer-offset"]
                parts = await sc.call(sa.ObjectApiListRequest.of(so.PartitionSpec))
                demo = [m for m in parts.items if m.name.startswith("demo-")]
                assert [m.name for m in demo] == ["demo-0", "demo-1", "demo-2"]
                assert all(len(set(m.spec.replicas)) == 2 and m.spec.leader == m.spec.replicas[0]
                           for m in demo)
                assert len({m.spec.leader for m in demo}) == 2  # leaders spread over both SPUs
                assert all(m.status.resolution == so.PartitionResolution.Online for m in demo)
                gone = await sc.call(sa.ObjectApiDeleteRequest.of(so.TopicSpec, "demo"))
                assert gone.error_code.ok
                missing = await sc.call(sa.ObjectApiDeleteRequest.of(so.TopicSpec, "demo"))
                assert missing.error_code.code == ErrorCode.TopicNotFound
                sys_del = await sc.call(sa.ObjectApiDeleteRequest.of(so.TopicSpec, "consumer-offset"))
                assert sys_del.error_code.code == ErrorCode.SystemSpecDeletionAttempt


async def test_watch_first_frame_and_changes_before_create_reply(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            async with await sc_conn(cluster) as sc:
                await sc.handshake()
                async with sc.open_stream(sa.ObjectApiWatchRequest.of(so.SmartModuleSpec)) as sm:
                    first = await sm.__anext__()
                    assert first.update.all == [] and first.update.changes == []
                async with sc.open_stream(sa.ObjectApiWatchRequest.of(so.TopicSpec)) as watch:
                    first = await watch.__anext__()
                    assert [m.name for m in first.update.all] == ["consumer-offset"]
                    status = await sc.call(sa.ObjectApiCreateRequest.of("w1", so.TopicSpec.computed(1)))
                    assert status.error_code.ok
                    # the change was sent before the reply: it is already queued
                    with trio.fail_after(0.5):
                        pushed = await watch.__anext__()
                    names = [(c.header, c.content.name) for c in pushed.update.changes]
                    assert (sa.MsgType.UPDATE, "w1") in names
                    await sc.call(sa.ObjectApiDeleteRequest.of(so.TopicSpec, "w1"))
                    pushed = await watch.__anext__()
                    assert [(c.header, c.content.name) for c in pushed.update.changes] == [(sa.MsgType.DELETE, "w1")]


async def test_other_object_kinds_are_stored(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            async with await sc_conn(cluster) as sc:
                await sc.handshake()
                spec = so.SmartModuleSpec(None, None, so.SmartModuleWasm(so.SmartModuleWasmFormat.Binary, b"\x00asm"))
                assert (await sc.call(sa.ObjectApiCreateRequest.of("mysm", spec))).error_code.ok
                listed = await sc.call(sa.ObjectApiListRequest.of(so.SmartModuleSpec))
                assert [(m.name, m.spec.wasm.payload) for m in listed.items] == [("mysm", b"\x00asm")]
                summary = await sc.call(sa.ObjectApiListRequest.of(so.SmartModuleSpec, summary=True))
                assert summary.items[0].spec.summary.wasm_length == 4
                gone = await sc.call(sa.ObjectApiDeleteRequest.of(so.SmartModuleSpec, "nope"))
                assert gone.error_code.code == ErrorCode.SmartModuleNotFound
                for spec_cls in (so.TableFormatSpec, so.SpuGroupSpec):
                    assert (await sc.call(sa.ObjectApiListRequest.of(spec_cls))).items == []


async def test_topics_survive_an_sc_restart(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            async with await sc_conn(cluster) as sc:
                await sc.handshake()
                assert (await sc.call(sa.ObjectApiCreateRequest.of("keep", so.TopicSpec.computed(2)))).error_code.ok
            await cluster.stop_sc()
            await cluster.start_sc()
            async with await sc_conn(cluster) as sc:
                await sc.handshake()
                topics = await sc.call(sa.ObjectApiListRequest.of(so.TopicSpec))
                assert [m.name for m in topics.items] == ["keep"]
                # the SPU reconnects and the partitions come back online
                with trio.fail_after(15):
                    while True:
                        parts = await sc.call(sa.ObjectApiListRequest.of(so.PartitionSpec))
                        if all(m.status.resolution == so.PartitionResolution.Online for m in parts.items):
                            break
                        await trio.sleep(0.05)


async def test_unknown_label_version_and_key_get_error_answers(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            host, port = cluster.endpoint.split(":")
            async with await trio.open_tcp_stream(host, int(port)) as s:
                async def ask(frame_payload: bytes) -> bytes:
                    await s.send_all(struct.pack(">i", len(frame_payload)) + frame_payload)
                    data = b""
                    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
                        data += await s.receive_some()
                    return data[4:]

                # api key 1003 at version 25 (> 19): an error answer, the connection stays
                body = sa.ObjectApiListRequest.of(so.TopicSpec).encode(19)
                reply = await ask(struct.pack(">Hhi", 1003, 25, 1) + b"\x00\x00" + body)
                assert struct.unpack(">ih", reply[:6]) == (1, ErrorCode.Other)
                # an unknown label in a Create: Status "unknown admin object type"
                payload = b"\x00\x04Nope" + struct.pack(">I", 0)
                reply = await ask(struct.pack(">Hhi", 1001, 19, 2) + b"\x00\x00" + payload)
                status = sa.Status.decode(reply[4:], 19)
                assert status.error_code.code == ErrorCode.Other and "unknown admin object type" in status.error_code.args[0]
                # an unknown api key
                reply = await ask(struct.pack(">Hhi", 777, 0, 3) + b"\x00\x00")
                assert struct.unpack(">ih", reply[:6]) == (3, ErrorCode.Other)


async def test_replication_settings_are_a_topic_update(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            async with await sc_conn(cluster) as sc:
                await sc.handshake()
                assert (await sc.call(sa.ObjectApiCreateRequest.of("rs", so.TopicSpec.computed(1)))).error_code.ok
                bad = await sc.call(sa.ObjectApiUpdateRequest.of(so.TopicSpec, "rs", so.SetReplicationConfig(2, None)))
                assert bad.error_code.code == ErrorCode.TopicInvalidConfiguration  # RF is 1
                ok = await sc.call(sa.ObjectApiUpdateRequest.of(so.TopicSpec, "rs", so.SetReplicationConfig(1, True)))
                assert ok.error_code.ok
                missing = await sc.call(sa.ObjectApiUpdateRequest.of(so.TopicSpec, "nope", so.SetReplicationConfig(1, None)))
                assert missing.error_code.code == ErrorCode.TopicNotFound
            await cluster.stop_sc()
            await cluster.start_sc()
            from fluvial.sc.backend import FileBackend

            from fluvial.sc.state import META_READERS

            topics = FileBackend(tmp_path / "sc" / "metadata").load(
                "Topic", so.TopicSpec, so.TopicStatus, META_READERS["Topic"])
            rs = next(t for t in topics if t.name == "rs")
            assert (rs.meta.min_isr, rs.meta.unclean_leader_election) == (1, True)
