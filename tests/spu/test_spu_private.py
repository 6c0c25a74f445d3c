"""The SPU private port with mutual TLS: a member certificate speaks for its own SPU only.

A follower's fetch names the follower (``follower_id``) and its LEO, which the leader counts
toward the high watermark; a member certificate that could fetch as another SPU could push the HW
past records that SPU never stored. Servers run in-process on 127.0.0.1 with ephemeral ports and
certificates minted per module.
"""

from __future__ import annotations

import ssl

import pytest
import trio

from fluvial.auth import Policy
from fluvial.errors import ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.access import spu_member_name
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.record import encode_batch
from fluvial.tls_certs import mint_cluster_certs
from harness.cluster import open_test_cluster

DOMAIN = "fluvial.local"
POLICY = {
    "members": {"principals": ["sc", "custom-spu-*"]},
    "principals": {"admin": {"permissions": [{"action": "admin"}, {"action": "produce", "topics": "*"},
                                             {"action": "consume", "topics": "*"}]}},
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    mint_cluster_certs(d, DOMAIN, spu_names=[spu_member_name(i) for i in (5001, 5002, 5003)])
    return d


def ctx_for(certs, stem: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / f"{stem}.crt"), str(certs / f"{stem}.key"))
    return ctx


async def create_topic(cluster, certs, name, replication):
    host, port = cluster.endpoint.split(":")
    async with open_connection(host, int(port), ssl_context=ctx_for(certs, "client-admin"),
                               server_hostname=DOMAIN) as c:
        await c.handshake()
        st = await c.call(sa.ObjectApiCreateRequest.of(name, so.TopicSpec.computed(1, replication)), timeout=30)
        assert st.error_code.ok, st


async def produce_committed(cluster, certs, topic) -> dict[int, ErrorCode]:
    """Produce one record ReadCommitted to every SPU; their answers by SPU id."""
    out = {}
    for spu_id, m in cluster.spus.items():
        async with open_connection("127.0.0.1", m.config.public_port, ssl_context=ctx_for(certs, "client-admin"),
                                   server_hostname=DOMAIN) as c:
            await c.handshake()
            resp = await c.call(api.ProduceRequest(None, api.Isolation.ReadCommitted, 10_000, [
                api.TopicProduceData(topic, [api.PartitionProduceData(0, encode_batch([b"v"]))])]), timeout=30)
            out[spu_id] = resp.responses[0].partitions[0].error_code.code
    return out


async def test_members_replicate_under_their_own_identities(certs, tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=2, certs=certs, policy=Policy.from_dict(POLICY)) as cluster:
            await create_topic(cluster, certs, "t", replication=2)
            while True:  # the partition goes online once both replicas have their assignment
                codes = await produce_committed(cluster, certs, "t")
                if ErrorCode.None_ in codes.values():
                    break
                await trio.sleep(0.05)
            assert sorted(codes.values()) == [ErrorCode.None_, ErrorCode.NotLeaderForPartition], codes


async def test_a_member_certificate_cannot_speak_for_another_spu(certs, tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=2, certs=certs, policy=Policy.from_dict(POLICY)) as cluster:
            await create_topic(cluster, certs, "t", replication=2)  # replicas 5001 and 5002

            async def codes(member: int, sender: int) -> list[ErrorCode]:
                """What SPU 5001's private port answers ``member``'s certificate sending as ``sender``."""
                port = cluster.spus[5001].config.private_port
                async with open_connection("127.0.0.1", port, ssl_context=ctx_for(certs, spu_member_name(member)),
                                           server_hostname=DOMAIN) as c:
                    await c.handshake()
                    reqs = [ia.FetchReplicasRequest(sender, [ia.FetchPartition("t", 0, 1, 0)], [0], max_wait_ms=0),
                            ia.OffsetForLeaderEpochRequest(sender, "t", 0, 1, 1),
                            ia.UpdateConsumerOffsetStoreRequest(sender, "c", "t", 0, 1, False)]
                    return [(await c.call(r, timeout=10)).error_code.code for r in reqs]

            assert await codes(5003, 5002) == [ErrorCode.PermissionDenied] * 3
            assert await codes(5001, 5002) == [ErrorCode.PermissionDenied] * 3
            assert ErrorCode.PermissionDenied not in await codes(5002, 5002)  # its own identity
