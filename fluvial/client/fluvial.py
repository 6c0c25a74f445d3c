"""``fluvial.connect()``: the cluster connection, its live metadata cache, and the SPU connection pool.

Theory of operation
-------------------
This mirrors the official client (../shared/fluvio-protocol/README.md §6):

1. ``connect()`` resolves where to go (``profile.resolve_endpoint``: an explicit endpoint, a named
   profile, or the current one), opens one multiplexed connection to the SC's public port and
   sends ApiVersions.
2. Three watch streams (SPU, Partition, Topic) keep a ``MetadataCache`` up to date. Every frame
   is applied as Fluvio's client store applies it: a non-empty ``all`` replaces the store, else
   ``changes`` are applied in order. A lookup first waits for its store's first frame (up to
   ``metadata_timeout``); after that a missing object is "not found" at once.
3. Routing: partition ``<topic>-<n>``'s leader is ``PartitionSpec.leader``; the SPU whose
   ``SpuSpec.id`` is that leader is dialled at its public endpoint (``ingress[0]`` host and
   ``port``, or ``public_endpoint_local`` with ``use_spu_local_address``). There is one
   multiplexed connection per SPU, shared by every producer, consumer and offset call.
4. If the SC connection drops, a background task reconnects (with backoff) and restarts the
   watches; the stores then resync from the first frames. SPU connections are reopened on
   demand by the next request that needs them.

Resource handling: everything runs in the nursery owned by the ``async with`` block; leaving it
flushes open producers, closes consumers, and closes every connection.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from fluvial.client.profile import (
    ResolvedCluster, TlsAnonymous, TlsDisabled, TlsPolicy, TlsVerified, resolve_endpoint,
    split_endpoint,
)
from fluvial.errors import (
    ConfigError, ConnectionLost, FluvialError, LocalTimeout, NotLeaderForPartitionError,
    PartitionNotLeaderError, SpuNotFoundError, TopicNotFoundError,
)
from fluvial.net.errors import ConnectError, RequestTimeout, TlsHandshakeError
from fluvial.net.multiplexer import ClientConnection, open_connection
from fluvial.net.tls import client_ssl_context
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.headers_api import EnableRecordHeadersRequest
from fluvial.protocol.sc_api import MsgType, ObjectApiWatchRequest, ObjectApiWatchResponse
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC, Metadata, PartitionSpec, SpuSpec, TopicSpec

log = logging.getLogger("fluvial.client")

__all__ = ["DEFAULT_METADATA_TIMEOUT", "Fluvial", "MetadataCache", "connect"]

DEFAULT_METADATA_TIMEOUT = 60.0  # seconds; Fluvio's FLV_METADATA_TIMEOUT default
DEFAULT_REQUEST_TIMEOUT = 60.0  # seconds; Fluvio's FLV_SOCKET_WAIT default
_RECONNECT_INITIAL = 0.05
_RECONNECT_MAX = 2.0

class MetadataTimeout(LocalTimeout):
    """A metadata store received no frame from the SC within ``metadata_timeout``."""


# ------------------------------------------------------------------------------ metadata


class MetadataCache:
    """The client's copy of the SC's Topic, Partition and SPU objects, kept live by watches.

    Stores are keyed as Fluvio's client keys them: topics by name, partitions by
    ``(topic, index)`` (the name ``<topic>-<n>`` split at its last ``-``), SPUs by ``SpuSpec.id``.
    ``version`` grows on every applied change, so holders of derived values (a producer's
    partition count) can tell cheaply that something moved.
    """

    LABELS = ("SPU", "Partition", "Topic")

    def __init__(self, timeout: float = DEFAULT_METADATA_TIMEOUT):
        self.timeout = timeout
        self.topics: dict[str, Metadata] = {}
        self.partitions: dict[tuple[str, int], Metadata] = {}
        self.spus: dict[int, Metadata] = {}
        self.version = 0
        self._synced = {label: trio.Event() for label in self.LABELS}
        self._changed = trio.Event()

    # -- applying watch frames (sync, pure bookkeeping) ---------------------------------------

    @staticmethod
    def _key(label: str, meta: Metadata) -> Any:
        if label == "Topic":
            return meta.name
        if label == "Partition":
            topic, sep, index = meta.name.rpartition("-")
            if not sep or not index.isdigit():
                raise DecodeError(f"partition name {meta.name!r} is not <topic>-<index>")
            return topic, int(index)
        return meta.spec.id

    def _store(self, label: str) -> dict:
        return {"Topic": self.topics, "Partition": self.partitions, "SPU": self.spus}[label]

    def apply(self, label: str, all_: list[Metadata], changes: list[tuple[MsgType, Metadata]]) -> None:
        """Apply one watch frame, as Fluvio's ``dual_store`` does (README §6.3)."""
        store = self._store(label)
        if all_:
            fresh = {self._key(label, m): m for m in all_}
            store.clear()
            store.update(fresh)
        else:
            for kind, m in changes:
                key = self._key(label, m)
                if kind == MsgType.DELETE:
                    store.pop(key, None)
                else:
                    store[key] = m
        self.version += 1
        self._synced[label].set()
        self._changed.set()
        self._changed = trio.Event()

    def reset_sync(self) -> None:
        """Forget that the stores were synced (the SC connection is being re-established); the
        objects stay, so lookups keep working with what was last known."""
        for label in self.LABELS:
            if self._synced[label].is_set() and not self._store(label):
                self._synced[label] = trio.Event()

    # -- waiting ------------------------------------------------------------------------------

    async def wait_synced(self, label: str) -> None:
        """Return once the ``label`` store has applied its first frame.

        Raises:
            MetadataTimeout: nothing arrived within ``timeout``.
        """
        if self._synced[label].is_set():
            return
        with trio.move_on_after(self.timeout):
            await self._synced[label].wait()
            return
        raise MetadataTimeout(detail=f"timed out searching metadata {label}: no update from the "
                                     f"SC within {self.timeout}s")

    async def wait_changed(self, timeout: float | None = None) -> bool:
        """Wait for the next applied change; False if ``timeout`` passed first."""
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self._changed.wait()
            return True
        return False

    # -- lookups ------------------------------------------------------------------------------

    async def topic(self, name: str) -> Metadata:
        """The topic's metadata.

        Raises:
            TopicNotFoundError: the SC has no such topic.
            MetadataTimeout: the Topic store never received its first frame.
        """
        await self.wait_synced("Topic")
        m = self.topics.get(name)
        if m is None:
            raise TopicNotFoundError(detail=f"Topic not found: {name}")
        return m

    def partition_count(self, topic: str) -> int:
        m = self.topics.get(topic)
        return 0 if m is None else m.spec.partition_count()

    async def partition(self, topic: str, index: int) -> Metadata:
        """The partition's metadata.

        Raises:
            TopicNotFoundError: no such partition (as Fluvio words it for ``<topic>-0``).
        """
        await self.wait_synced("Partition")
        m = self.partitions.get((topic, index))
        if m is None:
            raise TopicNotFoundError(detail=f"Topic not found: {topic} (no partition {topic}-{index})")
        return m

    async def created(self, topic: str, index: int = 0) -> Metadata:
        """The partition's metadata, waiting up to ``timeout`` for a topic that was just
        created (by this client or another: the SC's watch may bring it after the create's
        answer, or after another client's create was refused as a duplicate).

        Raises:
            TopicNotFoundError: still no such partition after ``timeout``.
        """
        with trio.move_on_after(self.timeout):
            while (topic, index) not in self.partitions or topic not in self.topics:
                await self.wait_changed()
        await self.topic(topic)
        return await self.partition(topic, index)

    def leader_of(self, topic: str, index: int) -> int | None:
        """The partition's leader SPU id from the cache, without waiting; None if unknown."""
        m = self.partitions.get((topic, index))
        if m is None or m.spec.leader < 0:
            return None
        return m.spec.leader

    async def spu(self, spu_id: int) -> Metadata:
        """The SPU's metadata.

        Raises:
            SpuNotFoundError: no SPU with that id.
        """
        await self.wait_synced("SPU")
        m = self.spus.get(spu_id)
        if m is None:
            raise SpuNotFoundError(detail=f"Spu not found: {spu_id}")
        return m


# -------------------------------------------------------------------------------------- TLS


class _TlsSettings:
    """The ssl context and server names for a TLS policy (README §6.5)."""

    def __init__(self, policy: TlsPolicy):
        self.policy = policy
        self.context: ssl.SSLContext | None = None
        self.domain: str | None = None
        if isinstance(policy, TlsDisabled):
            return
        if isinstance(policy, TlsAnonymous):
            ctx = client_ssl_context(check_hostname=False)
            self.context = ctx
            return
        if not isinstance(policy, TlsVerified):
            raise ConfigError(f"not a TLS policy: {policy!r}")
        self.domain = policy.domain
        try:
            if policy.source == "files":
                self.context = client_ssl_context(policy.ca_cert, cert_file=policy.cert,
                                                  key_file=policy.key)
            else:
                # ssl loads certificates and keys from files only: write the inline PEM text to
                # a private temporary directory for the moment it takes to load them.
                with tempfile.TemporaryDirectory(prefix="fluvial-tls-") as d:
                    paths = {}
                    for what in ("ca_cert", "cert", "key"):
                        p = Path(d) / what
                        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                        with os.fdopen(fd, "w") as f:
                            f.write(getattr(policy, what))
                        paths[what] = p
                    self.context = client_ssl_context(paths["ca_cert"], cert_file=paths["cert"],
                                                      key_file=paths["key"])
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"TLS: cannot load the certificates of the profile: {e}") from e

    def sc_server_name(self, host: str) -> str | None:
        if self.context is None:
            return None
        return self.domain if self.domain is not None else host

    def spu_server_name(self, spu_name: str, host: str) -> str | None:
        if self.context is None:
            return None
        return f"{spu_name}.{self.domain}" if self.domain is not None else host


def _caused_by_tls(exc: BaseException) -> bool:
    """Whether an ``ssl.SSLError`` is in ``exc``'s chain of causes.

    The transport reports a failed TLS handshake, and a connection the server ended with a TLS
    alert (TLS 1.3 refuses a client certificate only after the client's side of the handshake,
    so the refusal ends the first read), as a lost connection caused by the ``ssl.SSLError``.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


# ----------------------------------------------------------------------------------- Fluvial


class Fluvial:
    """A connection to a fluvial (or Fluvio) cluster. Create it with ``fluvial.connect()``.

    Attributes:
        cluster: where it is connected (endpoint, TLS policy, profile name).
        metadata: the live ``MetadataCache``.
        admin: the ``Admin`` API.
    """

    def __init__(self, cluster: ResolvedCluster, *, client_id: str = "fluvial",
                 metadata_timeout: float = DEFAULT_METADATA_TIMEOUT,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT):
        from fluvial.client.admin import Admin

        self.cluster = cluster
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.metadata = MetadataCache(metadata_timeout)
        self.admin = Admin(self)
        self._tls = _TlsSettings(cluster.tls)
        self._nursery: trio.Nursery | None = None
        self._sc: ClientConnection | None = None
        self._sc_up = trio.Event()
        self._spu_conns: dict[int, ClientConnection] = {}
        self._spu_locks: dict[int, trio.Lock] = {}
        self._producers: set[Any] = set()
        self._consumers: set[Any] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Fluvial {self.cluster.endpoint}{' (closed)' if self._closed else ''}>"

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None or self._closed:
            raise FluvialError(detail="this Fluvial connection is closed")
        return self._nursery

    # -- the SC connection ---------------------------------------------------------------------

    async def _sc_keeper(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep the SC connection and its watches; with several SC endpoints, a failure moves
        on to the next one (and the first connection tries each once before giving up)."""
        endpoints = self.cluster.endpoints
        turn = 0
        started = False
        delay = _RECONNECT_INITIAL
        while True:
            endpoint = endpoints[turn % len(endpoints)]
            host, port = split_endpoint(endpoint)
            try:
                async with open_connection(host, port, ssl_context=self._tls.context,
                                           server_hostname=self._tls.sc_server_name(host),
                                           client_id=self.client_id) as conn:
                    await conn.handshake(timeout=self.request_timeout)
                    if conn.lookup_version(ObjectApiWatchRequest) is None:
                        platform = conn.versions.platform_version
                        raise FluvialError(detail=f"the cluster ({platform}) offers no usable "
                                                  f"version of the Watch API; not compatible")
                    async with trio.open_nursery() as watches:
                        for label in MetadataCache.LABELS:
                            await watches.start(self._watch, conn, label)
                        self._sc = conn
                        self._sc_up.set()
                        delay = _RECONNECT_INITIAL
                        if not started:
                            started = True
                            task_status.started()
                        await conn.wait_closed()
                        watches.cancel_scope.cancel()
            except (ConnectionLost, RequestTimeout, DecodeError) as e:
                if not started:
                    if _caused_by_tls(e):
                        raise TlsHandshakeError(detail=str(e)) from e
                    if turn + 1 >= len(endpoints):
                        raise
                (log.warning if started else log.info)(
                    "lost the SC connection to %s: %s; trying again", endpoint, e)
            turn += 1
            self._sc = None
            if self._sc_up.is_set():
                self._sc_up = trio.Event()
            self.metadata.reset_sync()
            if turn % len(endpoints) == 0:  # back off once per round over the SCs
                await trio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX)

    async def _watch(self, conn: ClientConnection, label: str, *,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
        spec_cls = {"Topic": TopicSpec, "Partition": PartitionSpec, "SPU": SpuSpec}[label]
        try:
            async with conn.open_stream(ObjectApiWatchRequest.of(spec_cls)) as stream:
                task_status.started()
                while True:
                    try:
                        resp: ObjectApiWatchResponse = await stream.receive()
                    except DecodeError as e:
                        log.warning("undecodable %s watch frame, skipped: %s", label, e)
                        continue
                    if resp.label != label:
                        log.warning("invalid update type %r on the %s watch", resp.label, label)
                        continue
                    u = resp.update
                    try:
                        self.metadata.apply(label, u.all, [(c.header, c.content) for c in u.changes])
                    except DecodeError as e:
                        log.warning("problem converting a %s watch frame, skipped: %s", label, e)
        except ConnectionLost:
            return

    async def sc(self) -> ClientConnection:
        """The SC connection, waiting (up to ``request_timeout``) while it is re-established.

        Raises:
            ConnectionLost: the SC stayed unreachable.
        """
        if self._sc is not None and self._sc.is_open:
            return self._sc
        with trio.move_on_after(self.request_timeout):
            while self._sc is None or not self._sc.is_open:
                await self._sc_up.wait()
                await trio.lowlevel.checkpoint()
            return self._sc
        raise ConnectionLost(detail=f"the SC at {self.cluster.endpoint} is unreachable")

    async def sc_call(self, req: Any) -> Any:
        """Send an admin request to the SC and return the decoded response."""
        conn = await self.sc()
        return await conn.call(req, timeout=self.request_timeout)

    # -- SPU connections -----------------------------------------------------------------------

    async def _hold_spu(self, spu_id: int, name: str, host: str, port: int, *,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with open_connection(host, port, ssl_context=self._tls.context,
                                       server_hostname=self._tls.spu_server_name(name, host),
                                       client_id=self.client_id) as conn:
                await conn.handshake(timeout=self.request_timeout)
                if conn.lookup_version(EnableRecordHeadersRequest) is not None:
                    # this SPU keeps record headers: have them served here (else it strips them)
                    await conn.call(EnableRecordHeadersRequest(), timeout=self.request_timeout)
                task_status.started(conn)
                started = True
                await conn.wait_closed()
        except (ConnectionLost, RequestTimeout, DecodeError) as e:
            if not started:
                if _caused_by_tls(e):
                    raise TlsHandshakeError(detail=str(e)) from e
                raise
            log.debug("SPU %d connection ended: %s", spu_id, e)

    async def spu_connection(self, spu_id: int) -> ClientConnection:
        """The (shared) connection to SPU ``spu_id``, opened if needed.

        Raises:
            SpuNotFoundError: the SC knows no such SPU.
            ConnectError: it cannot be reached (``TlsHandshakeError``: TLS failed).
        """
        conn = self._spu_conns.get(spu_id)
        if conn is not None and conn.is_open:
            return conn
        lock = self._spu_locks.get(spu_id)
        if lock is None:
            lock = self._spu_locks[spu_id] = trio.Lock()
        async with lock:
            conn = self._spu_conns.get(spu_id)
            if conn is not None and conn.is_open:
                return conn
            meta = await self.metadata.spu(spu_id)
            spec: SpuSpec = meta.spec
            host, port = split_endpoint(spec.public_addr(self.cluster.use_spu_local_address))
            try:
                conn = await self.nursery.start(partial(self._hold_spu, spu_id, meta.name, host, port))
            except ConnectionLost as e:
                failed = TlsHandshakeError if isinstance(e, TlsHandshakeError) else ConnectError
                raise failed(detail=f"cannot reach SPU {spu_id} at {host}:{port}: {e}") from e
            self._spu_conns[spu_id] = conn
            return conn

    async def leader_connection(self, topic: str, partition: int) -> tuple[int, ClientConnection]:
        """``(leader id, connection)`` for a partition, from the cache.

        Raises:
            TopicNotFoundError: no such partition.
            NotLeaderForPartitionError: the partition has no leader right now.
        """
        meta = await self.metadata.partition(topic, partition)
        leader = meta.spec.leader
        if leader < 0:
            raise NotLeaderForPartitionError(detail=f"partition {topic}-{partition} has no leader")
        return leader, await self.spu_connection(leader)

    async def offsets_connection(self) -> ClientConnection:
        """The connection to the leader of ``consumer-offset``-0, where consumer offsets live."""
        meta = await self.metadata.partition(CONSUMER_OFFSET_TOPIC, 0)
        if meta.spec.leader < 0:
            raise PartitionNotLeaderError(detail=f"{CONSUMER_OFFSET_TOPIC}-0 has no leader")
        return await self.spu_connection(meta.spec.leader)

    # -- producers and consumers ---------------------------------------------------------------

    def producer(self, topic: str, **config: Any):
        """A ``Producer`` for ``topic``; see ``fluvial.client.producer.Producer`` for the options.

        Use it as ``async with fl.producer(topic) as p:`` (flushes and closes on exit), or call
        ``await p.send(...)`` directly and ``await p.aclose()`` when done.
        """
        from fluvial.client.producer import Producer

        return Producer(self, topic, **config)

    def sink(self, topic: str, *, stream: str | int, **config: Any):
        """A bounded stream's sender: ``async with fl.sink(topic, stream=ID) as sink:``; see
        ``fluvial.client.stream.Sink`` and docs/streams.md."""
        from fluvial.client.stream import Sink

        return Sink(self, topic, stream, **config)

    def source(self, topic: str, *, stream: str | int, **config: Any):
        """A bounded stream's receiver: ``async for rec in fl.source(topic, stream=ID)``; see
        ``fluvial.client.stream.Source`` and docs/streams.md."""
        from fluvial.client.stream import Source

        return Source(self, topic, stream, **config)

    def call(self, name: str, **config: Any):
        """One call of processor ``name``'s function: ``async with fl.call(NAME) as (sink,
        source):`` send its input into ``sink``, read its outputs from ``source`` until EOS; see
        ``fluvial.client.call.Call`` and docs/processors.md."""
        from fluvial.client.call import Call

        return Call(self, name, **config)

    def consumer(self, topic: str, **config: Any):
        """A ``Consumer`` of ``topic``; see ``fluvial.client.consumer.Consumer`` for the options.
        With ``group="name"`` a ``GroupConsumer`` (``fluvial.client.group``): the members of the
        group share the topic's partitions.

        Iterate it with ``async for record in consumer``; ``async with`` closes it on exit.
        """
        from fluvial.client.consumer import Consumer

        if config.get("group") is not None:  # a member of a consumer group: fluvial.client.group
            from fluvial.client.group import GroupConsumer

            return GroupConsumer(self, topic, **config)
        config.pop("group", None)
        return Consumer(self, topic, **config)

    def streams(self, **config: Any):
        """Real-time streams on this connection (iii's streams); see
        ``fluvial.client.streams.Streams`` for the options."""
        from fluvial.client.streams import Streams

        return Streams(self, **config)

    # -- lifetime ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Flush and close the producers, close the consumers, then every connection."""
        if self._closed:
            return
        try:
            for c in list(self._consumers):
                await c.aclose()
            errors = []
            for p in list(self._producers):
                try:
                    await p.aclose()
                except FluvialError as e:
                    errors.append(e)
            if errors:
                raise errors[0]
        finally:
            self._closed = True
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            self._spu_conns.clear()


async def _run_services(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """A nursery for background tasks, owned by a task of its own so that cancelling it (on
    ``aclose``) cannot cancel the body of the user's ``async with``."""
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


@asynccontextmanager
async def connect(profile: str | None = None, endpoint: str | None = None,
                  tls: TlsPolicy | None = None, *, client_id: str = "fluvial",
                  metadata_timeout: float = DEFAULT_METADATA_TIMEOUT,
                  request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                  config_path: str | os.PathLike[str] | None = None) -> AsyncIterator[Fluvial]:
    """Connect to a cluster: ``async with fluvial.connect() as fl: ...``.

    Args:
        profile: a profile name from the profile file; None means the current profile.
        endpoint: ``host:port`` of the SC's public port; overrides the profile.
        tls: a ``TlsPolicy`` overriding the profile's (with ``endpoint``: default disabled).
        client_id: the request header's client id.
        metadata_timeout: seconds a lookup waits for the SC's first metadata frame.
        request_timeout: seconds to wait for a response to an admin or offset request.
        config_path: the profile file (default: ``$FLUVIAL_CONFIG``, ``$FLUVIAL_HOME/config``).

    Raises:
        ConfigError: no usable profile, or bad TLS files.
        ConnectError: the SC cannot be reached.
        TlsHandshakeError: TLS failed (an untrusted or misnamed server, a refused client
            certificate, a peer that does not speak TLS).
        FluvialError: the SC is not compatible.

    Resource handling: leaving the block normally flushes producers, closes consumers (storing
    their automatic consumer offsets) and closes the connections. Leaving it with an exception
    closes everything at once: records still queued in producers are not sent.
    """
    cluster = resolve_endpoint(profile, endpoint, tls, path=config_path)
    fl = Fluvial(cluster, client_id=client_id, metadata_timeout=metadata_timeout,
                 request_timeout=request_timeout)
    try:
        async with trio.open_nursery() as outer:
            services = await outer.start(_run_services)
            fl._nursery = services
            try:
                await services.start(fl._sc_keeper)
                yield fl
                await fl.aclose()
            finally:
                fl._closed = True
                services.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The outer nursery only holds the services task, which does not fail on its own: a
        # group of one is the connect failure or the caller's own exception. Raise it as it was.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise
