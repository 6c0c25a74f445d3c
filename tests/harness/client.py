"""A deliberately small client for failure tests, built on the wire protocol alone.

It speaks to the SC and the SPUs with ``open_connection`` and the protocol messages, so that it does
not depend on the client library the tests are meant to check: ``ScAdmin`` (the few SC calls a
failure test needs), waits that poll the SC under a deadline, one produce (``send_batch``) and one
classic fetch (``fetch``).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence

import trio

from fluvial.errors import FluvialError
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.record import decode_record_set, encode_batch



class ScAdmin:
    """The few SC calls a failure test needs, one short connection per call (the SC itself may
    be killed between calls).

    Raises (every method): ``FluvialError`` subclasses (``ConnectionLost``, ``RequestTimeout``)
    when the SC is unreachable, ``DecodeError`` on a bad answer.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.ssl_context, self.server_hostname = ssl_context, server_hostname

    @contextlib.asynccontextmanager
    async def connect(self, host: str, port: int, client_id: str = "fluvial-chaos"):
        """A handshaken connection to any server of the cluster (the SC or an SPU), with this
        admin's TLS settings."""
        async with open_connection(host, port, ssl_context=self.ssl_context,
                                   server_hostname=self.server_hostname if self.ssl_context else None,
                                   client_id=client_id) as conn:
            await conn.handshake(timeout=self.timeout)
            yield conn

    async def call(self, req):
        async with self.connect(self.host, self.port) as conn:
            return await conn.call(req, timeout=self.timeout)

    async def create_topic(self, name: str, partitions: int = 1, replication: int = 3) -> None:
        spec = so.TopicSpec.computed(partitions, replication)
        status = await self.call(sa.ObjectApiCreateRequest.of(name, spec, timeout_ms=30_000))
        if not status.error_code.ok:
            raise status.error_code.exception(f"create topic {name}: {status.error_message}")

    async def delete_topic(self, name: str) -> None:
        status = await self.call(sa.ObjectApiDeleteRequest.of(so.TopicSpec, name))
        if not status.error_code.ok:
            raise status.error_code.exception(f"delete topic {name}: {status.error_message}")

    async def partitions(self, topic: str) -> dict[int, so.Metadata]:
        """partition index -> Metadata(PartitionSpec, PartitionStatus)."""
        resp = await self.call(sa.ObjectApiListRequest.of(so.PartitionSpec))
        out = {}
        for m in resp.items:
            t, _, p = m.name.rpartition("-")
            if t == topic:
                out[int(p)] = m
        return out

    async def online_spus(self) -> set[int]:
        """The ids of the SPUs the SC counts online."""
        resp = await self.call(sa.ObjectApiListRequest.of(so.SpuSpec))
        return {m.spec.id for m in resp.items
                if m.status.resolution == so.SpuStatusResolution.Online}

    async def spu_endpoints(self) -> dict[int, tuple[str, int]]:
        """spu id -> public (host, port)."""
        resp = await self.call(sa.ObjectApiListRequest.of(so.SpuSpec))
        out = {}
        for m in resp.items:
            ep = m.spec.public_endpoint
            addr = ep.ingress[0] if ep.ingress else None
            host = (addr.ip or addr.hostname) if addr else None
            out[m.spec.id] = (host or "127.0.0.1", ep.port)
        return out


def partition_in_sync(m: so.Metadata, replication: int) -> bool:
    """The SC's view of one partition: online under its elected leader, HW = LEO, and every
    follower reported at the leader's LEO."""
    st = m.status
    if st.resolution != so.PartitionResolution.Online or st.leader.spu != m.spec.leader:
        return False
    followers = {r.spu: r.leo for r in st.replicas}
    return (st.leader.hw == st.leader.leo and len(followers) == replication - 1
            and all(leo == st.leader.leo for leo in followers.values()))


async def connects(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted (e.g. which address a port binds)."""
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def wait_until(predicate, what: str, timeout: float, interval: float = 0.05):
    """Poll the async ``predicate`` until it returns a truthy value; exceptions count as False.

    Raises:
        TimeoutError: with ``what`` and the last value or exception.
    """
    last = None
    with trio.move_on_after(timeout):
        while True:
            try:
                last = await predicate()
                if last:
                    return last
            except (FluvialError, DecodeError, OSError) as e:
                last = e
            await trio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


async def wait_partitions_in_sync(admin: ScAdmin, topic: str, partitions: int, replication: int,
                                  timeout: float) -> dict[int, so.Metadata]:
    """Until the SC shows every partition of ``topic`` in sync (``partition_in_sync``); the
    timeout names the last status seen."""
    seen: list = [None]

    async def synced():
        ps = seen[0] = await admin.partitions(topic)
        if len(ps) == partitions and all(partition_in_sync(m, replication) for m in ps.values()):
            return ps
        return None

    try:
        return await wait_until(synced, f"{topic}: all {replication} replicas in sync", timeout,
                                0.1)
    except TimeoutError as e:
        last = {p: (m.spec.leader, m.spec.replicas, m.status) for p, m in (seen[0] or {}).items()}
        raise TimeoutError(f"{e}; last status: {last}") from None


async def wait_leader(admin: ScAdmin, topic: str, partition: int, timeout: float, *,
                      not_spu: int | None = None) -> int:
    """Until the partition is Online under a leader (other than ``not_spu``) that has reported."""
    async def leader():
        m = (await admin.partitions(topic)).get(partition)
        if m is None:
            return None
        st = m.status
        ok = (st.resolution == so.PartitionResolution.Online and st.leader.spu == m.spec.leader
              and m.spec.leader != not_spu)
        return m.spec.leader if ok else None

    return await wait_until(leader, f"{topic}-{partition}: a live leader", timeout)


async def wait_replica_caught_up(admin: ScAdmin, topic: str, partition: int, spu: int, target: int,
                                 timeout: float) -> None:
    """Until the leader reports ``spu``'s LEO at or beyond ``target`` (or ``spu`` leads)."""
    async def caught_up():
        m = (await admin.partitions(topic)).get(partition)
        if m is None or m.status.resolution != so.PartitionResolution.Online:
            return False
        if m.spec.leader == spu:
            return m.status.leader.leo >= target
        return any(r.spu == spu and r.leo >= target for r in m.status.replicas)

    await wait_until(caught_up, f"{topic}-{partition}: spu {spu} at LEO >= {target}", timeout, 0.1)


async def send_batch(admin: ScAdmin, spu: int, topic: str, partition: int, values: Sequence[bytes], *,
                     isolation: api.Isolation, timeout_ms: int = 3000) -> api.PartitionProduceResponse:
    """Produce one batch of ``values`` to SPU ``spu`` (whatever its role) and return its answer.

    Raises:
        FluvialError (``ConnectionLost``, ``RequestTimeout``): no answer.
    """
    host, port = (await admin.spu_endpoints())[spu]
    async with admin.connect(host, port) as conn:
        req = api.ProduceRequest(None, isolation, timeout_ms, [api.TopicProduceData(
            topic, [api.PartitionProduceData(partition, encode_batch(list(values)))])], [])
        resp = await conn.call(req, timeout=timeout_ms / 1000 + 5)
    return resp.responses[0].partitions[0]


async def fetch(conn, topic: str, partition: int, offset: int, isolation: api.Isolation):
    """One classic Fetch: (records, high watermark, error name or None)."""
    req = api.FetchRequest(0, 0, 1 << 20, isolation, [api.FetchableTopic(topic, [
        api.FetchPartition(partition, -1, offset, 0, 1 << 20)])], [])
    resp = await conn.call(req, timeout=10)
    pr = resp.topics[0].partitions[0]
    if not pr.error_code.ok:
        return [], 0, pr.error_code.code.name
    records = decode_record_set(pr.records) if pr.records else []
    return records, pr.high_watermark, None



class Router:
    """Partition leaders and SPU endpoints, from the SC, refreshed on demand."""

    def __init__(self, admin: ScAdmin, topic: str):
        self.admin, self.topic = admin, topic
        self.endpoints: dict[int, tuple[str, int]] = {}

    async def leader(self, partition: int) -> tuple[int, str, int]:
        m = (await self.admin.partitions(self.topic)).get(partition)
        if m is None:
            raise LookupError(f"{self.topic}-{partition} unknown to the SC")
        spu = m.spec.leader
        if spu not in self.endpoints:
            self.endpoints.update(await self.admin.spu_endpoints())
        if spu not in self.endpoints:
            raise LookupError(f"no endpoint for SPU {spu}")
        host, port = self.endpoints[spu]
        return spu, host, port


RETRIABLE = (FluvialError, DecodeError, OSError, LookupError, trio.BrokenResourceError,
              trio.ClosedResourceError)

