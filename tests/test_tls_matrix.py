"""The TLS and authorization matrix on the SC and SPU ports (issue core-7).

Every bad client is rejected and no request of theirs is executed: no topic is created, no record
is written. Certificates are minted per test module in a temp dir; servers run in-process on
127.0.0.1 with ephemeral ports.
"""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
import trio

from fluvial.auth import Policy
from fluvial.errors import ConnectionLost, ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import internal_api as ia
from fluvial.protocol.codec import DecodeError
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.record import encode_batch
from fluvial.tls_certs import CA
from harness.cluster import open_test_cluster

DOMAIN = "fluvial.local"
POLICY = {
    "allow_anonymous": False,
    "members": {"principals": ["sc", "custom-spu-*"]},
    "principals": {
        "admin": {"permissions": [{"action": "admin"}, {"action": "produce", "topics": "*"},
                                  {"action": "consume", "topics": "*"}]},
        "reader": {"permissions": [{"action": "consume", "topics": "*"}]},
    },
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The cluster's files (as ``fluvial cluster certs`` lays them out) plus bad client certs."""
    d = tmp_path_factory.mktemp("certs")
    ca = CA("fluvial CA for fluvial.local")
    ca.write(d, "ca")
    hosts = (DOMAIN, f"*.{DOMAIN}", "localhost", "127.0.0.1")
    ca.issue_server_cert(*hosts, cn=DOMAIN).write(d, "server")
    for member in ("sc", "custom-spu-5001"):
        ca.issue_member_cert(member, *hosts).write(d, member)
    for cn in ("admin", "reader", "stranger"):
        ca.issue_client_cert(cn).write(d, f"client-{cn}")
    now = dt.datetime.now(dt.timezone.utc)
    ca.issue_client_cert("admin", not_before=now - dt.timedelta(days=10),
                         not_after=now - dt.timedelta(days=1)).write(d, "expired-admin")
    ca.issue_cert(cn="admin", eku=("serverAuth",)).write(d, "server-usage-admin")
    CA("fluvial CA for fluvial.local").issue_client_cert("admin").write(d, "other-ca-admin")
    return d


def client_ctx(certs, stem: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if stem:
        ctx.load_cert_chain(str(certs / f"{stem}.crt"), str(certs / f"{stem}.key"))
    return ctx


async def try_sc_create(port: int, ctx: ssl.SSLContext | None, name: str) -> str:
    """Try to create a topic; returns how it ended: ok, denied, refused."""
    try:
        with trio.fail_after(10):
            async with open_connection("127.0.0.1", port, ssl_context=ctx,
                                       server_hostname=DOMAIN if ctx else None) as c:
                await c.handshake(timeout=5)
                st = await c.call(sa.ObjectApiCreateRequest.of(name, so.TopicSpec.computed(1)), timeout=10)
                if st.error_code.code == ErrorCode.PermissionDenied:
                    return "denied"
                return "ok" if st.error_code.ok else f"error {st.error_code.code.name}"
    except (ConnectionLost, OSError, trio.BrokenResourceError, ssl.SSLError, trio.TooSlowError):
        return "refused"


async def try_produce(port: int, ctx: ssl.SSLContext | None, topic: str) -> str:
    try:
        with trio.fail_after(10):
            async with open_connection("127.0.0.1", port, ssl_context=ctx,
                                       server_hostname=f"custom-spu-5001.{DOMAIN}" if ctx else None) as c:
                await c.handshake(timeout=5)
                req = api.ProduceRequest(None, api.Isolation.ReadUncommitted, 5000, [api.TopicProduceData(
                    topic, [api.PartitionProduceData(0, encode_batch([b"x"]))])])
                resp = await c.call(req, timeout=10)
                err = resp.responses[0].partitions[0].error_code
                if err.code == ErrorCode.PermissionDenied:
                    return "denied"
                return "ok" if err.ok else f"error {err.code.name}"
    except (ConnectionLost, OSError, trio.BrokenResourceError, ssl.SSLError, trio.TooSlowError):
        return "refused"


async def topic_names(cluster, certs) -> list[str]:
    host, port = cluster.endpoint.split(":")
    async with open_connection(host, int(port), ssl_context=client_ctx(certs, "client-admin"),
                               server_hostname=DOMAIN) as c:
        await c.handshake()
        return [m.name for m in (await c.call(sa.ObjectApiListRequest.of(so.TopicSpec))).items]


async def partition_end(cluster, certs, topic: str) -> int:
    port = cluster.spus[5001].config.public_port
    async with open_connection("127.0.0.1", port, ssl_context=client_ctx(certs, "client-admin"),
                               server_hostname=f"custom-spu-5001.{DOMAIN}") as c:
        await c.handshake()
        r = await c.call(api.FetchOffsetsRequest([api.FetchOffsetTopic(topic, [api.FetchOffsetPartition(0)])]))
        return r.topics[0].partitions[0].last_stable_offset


async def test_the_tls_matrix_rejects_every_bad_client(certs, tmp_path):
    with trio.fail_after(120):
        async with open_test_cluster(tmp_path, spus=1, certs=certs,
                                     policy=Policy.from_dict(POLICY)) as cluster:
            sc_port = int(cluster.endpoint.split(":")[1])
            spu_port = cluster.spus[5001].config.public_port

            # a legitimate admin works on both ports
            assert await try_sc_create(sc_port, client_ctx(certs, "client-admin"), "good") == "ok"
            assert await try_produce(spu_port, client_ctx(certs, "client-admin"), "good") == "ok"

            cases = {
                "no client cert": client_ctx(certs, None),
                "other CA": client_ctx(certs, "other-ca-admin"),
                "unknown principal": client_ctx(certs, "client-stranger"),
                "read-only principal": client_ctx(certs, "client-reader"),
                "plaintext to a TLS port": None,
            }
            for what, ctx in cases.items():
                sc = await try_sc_create(sc_port, ctx, f"bad-{len(what)}")
                spu = await try_produce(spu_port, ctx, "good")
                assert sc in ("refused", "denied"), (what, sc)
                assert spu in ("refused", "denied"), (what, spu)

            # nothing they asked for happened
            assert await topic_names(cluster, certs) == ["good"]
            assert await partition_end(cluster, certs, "good") == 1


async def test_expired_and_wrong_usage_certificates_are_refused(certs, tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=1, certs=certs,
                                     policy=Policy.from_dict(POLICY)) as cluster:
            sc_port = int(cluster.endpoint.split(":")[1])
            spu_port = cluster.spus[5001].config.public_port
            for stem in ("expired-admin", "server-usage-admin"):
                assert await try_sc_create(sc_port, client_ctx(certs, stem), "nope") == "refused", stem
                assert await try_produce(spu_port, client_ctx(certs, stem), "consumer-offset") == "refused", stem
            assert await topic_names(cluster, certs) == []


async def test_a_client_certificate_cannot_act_as_a_member(certs, tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=1, certs=certs,
                                     policy=Policy.from_dict(POLICY)) as cluster:
            # the SC private port: an admin client certificate may not register an SPU
            async with open_connection("127.0.0.1", cluster.sc_ports[1],
                                       ssl_context=client_ctx(certs, "client-admin"),
                                       server_hostname=DOMAIN) as c:
                await c.handshake()
                with pytest.raises((ConnectionLost, DecodeError)):
                    # refused with an error frame and a hang-up: nothing registered
                    await c.call(ia.RegisterSpuRequest(9999, "127.0.0.1", 1, "127.0.0.1", 2), timeout=5)
            # a member certificate of another SPU may not register as 9999 either
            async with open_connection("127.0.0.1", cluster.sc_ports[1],
                                       ssl_context=client_ctx(certs, "custom-spu-5001"),
                                       server_hostname=DOMAIN) as c:
                await c.handshake()
                resp = await c.call(ia.RegisterSpuRequest(9999, "127.0.0.1", 1, "127.0.0.1", 2), timeout=5)
                assert resp.error_code.code == ErrorCode.PermissionDenied
            # the SPU private port: a client certificate may not fetch replicas
            async with open_connection("127.0.0.1", cluster.spus[5001].config.private_port,
                                       ssl_context=client_ctx(certs, "client-admin"),
                                       server_hostname=DOMAIN) as c:
                await c.handshake()
                with pytest.raises((ConnectionLost, DecodeError)):
                    await c.call(ia.FetchReplicasRequest(5002, [ia.FetchPartition("consumer-offset", 0, 1, 0)], [0]), timeout=5)
