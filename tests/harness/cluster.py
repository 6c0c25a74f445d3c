"""An in-process cluster for tests: one SC and N SPUs in the caller's trio run.

    async with open_test_cluster(tmp_path, spus=3) as cluster:
        cluster.endpoint            # "127.0.0.1:<sc public port>"
        await cluster.stop_spu(5002)   # cancel that SPU (its data stays)
        await cluster.start_spu(5002)  # bring it back on the same ports and data

Every server binds 127.0.0.1 port 0 and lives under the given directory. Leaving the block
cancels everything it started.

Network partitions: with ``proxied=True`` every SPU reaches the SC's private port, and other
SPUs (its followers) reach its private port, through a ``harness.proxy.TcpProxy``
(``cluster.links[spu_id]``; the SPU advertises the proxy's port). Clients reach every public
port directly, so ``isolate`` makes a partition in which clients still reach the SPU:

    async with open_test_cluster(tmp_path, spus=3, proxied=True) as cluster:
        cluster.isolate(5001)   # 5001 loses the SC and its followers; clients still reach it
        cluster.heal(5001)

What ``isolate`` does not cut: the SPU's own connections to other SPUs' private ports (as a
follower of another leader, or to the consumer-offset leader), which go through those SPUs'
proxies.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from fluvial.sc.server import ScConfig, serve_sc
from fluvial.spu.server import SpuConfig, serve_spu
from harness.proxy import TcpProxy


@dataclass
class _Member:
    config: object
    scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)


@dataclass
class SpuLinks:
    """The proxies on one SPU's cluster links: ``sc`` carries its link to the SC's private port,
    ``private`` its followers' links to its private port."""

    sc: TcpProxy
    private: TcpProxy

    def cut(self) -> None:
        self.sc.cut()
        self.private.cut()

    def heal(self) -> None:
        self.sc.heal()
        self.private.heal()


class TestCluster:
    __test__ = False  # not a pytest class

    def __init__(self, base: Path, nursery: trio.Nursery, heartbeat_timeout: float,
                 certs: Path | None = None, policy=None, *, proxied: bool = False,
                 replica_lag_time_max: float | None = None):
        self.base = base
        self.nursery = nursery
        self.certs, self.policy = certs, policy
        self.proxied = proxied
        self.replica_lag_time_max = replica_lag_time_max
        self.links: dict[int, SpuLinks] = {}
        self.sc_config = ScConfig(data_dir=base / "sc", public_port=0, private_port=0,
                                  heartbeat_timeout_seconds=heartbeat_timeout,
                                  tls=self._tls("sc"), policy=policy)
        self.sc: _Member | None = None
        self.spus: dict[int, _Member] = {}
        self.sc_ports = (0, 0)

    def _tls(self, member: str):
        if self.certs is None:
            return None
        from fluvial.net.tls import ClusterTls

        return ClusterTls(self.certs, member, anonymous_clients=bool(self.policy and self.policy.allow_anonymous))

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.sc_ports[0]}"

    async def _run(self, member: _Member, serve, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as scope:
                member.scope = scope
                await serve(member.config, task_status=task_status)
        finally:
            member.done.set()

    async def start_sc(self) -> None:
        self.sc = _Member(self.sc_config)
        self.sc_ports = await self.nursery.start(self._run, self.sc, serve_sc)
        # restart on the same ports
        self.sc_config.public_port, self.sc_config.private_port = self.sc_ports

    async def stop_sc(self) -> None:
        await self._stop(self.sc)

    async def start_spu(self, spu_id: int) -> tuple[int, int]:
        m = self.spus.get(spu_id)
        if m is None:
            cfg = SpuConfig(spu_id=spu_id, data_dir=self.base / f"spu-{spu_id}",
                            sc_port=self.sc_ports[1], heartbeat_seconds=0.2,
                            tls=self._tls(f"custom-spu-{spu_id}"), policy=self.policy)
            if self.replica_lag_time_max is not None:
                cfg.replica_lag_time_max_seconds = self.replica_lag_time_max
            m = _Member(cfg)
        else:
            m = _Member(m.config)
        m.config.sc_port = self.sc_ports[1]
        links = await self._links(spu_id) if self.proxied else None
        if links is not None:
            m.config.sc_port = links.sc.port
            m.config.advertised_private_port = links.private.port
        self.spus[spu_id] = m
        ports = await self.nursery.start(self._run, m, serve_spu)
        m.config.public_port, m.config.private_port = ports
        if links is not None:
            links.private.target = ("127.0.0.1", ports[1])
        return ports

    async def _links(self, spu_id: int) -> SpuLinks:
        """The SPU's proxies, started on its first start and kept (same ports) across restarts."""
        links = self.links.get(spu_id)
        if links is None:
            links = SpuLinks(TcpProxy(("127.0.0.1", self.sc_ports[1])), TcpProxy())
            await self.nursery.start(links.sc.serve)
            await self.nursery.start(links.private.serve)
            self.links[spu_id] = links
        return links

    def isolate(self, spu_id: int) -> None:
        """Cut the SPU off from the SC and from its followers (needs ``proxied``)."""
        self.links[spu_id].cut()

    def heal(self, spu_id: int) -> None:
        self.links[spu_id].heal()

    async def stop_spu(self, spu_id: int) -> None:
        await self._stop(self.spus[spu_id])

    @staticmethod
    async def _stop(m: _Member | None) -> None:
        if m is not None and m.scope is not None:
            m.scope.cancel()
            await m.done.wait()


@asynccontextmanager
async def open_test_cluster(base: Path, spus: int = 1, *, first_id: int = 5001,
                            heartbeat_timeout: float = 3.0, certs: Path | None = None, policy=None,
                            proxied: bool = False, replica_lag_time_max: float | None = None):
    """``certs``: a directory from ``fluvial cluster certs`` (TLS on every port, mutual TLS
    between members); ``policy``: a ``fluvial.auth.Policy`` enforced by every server;
    ``proxied``: every SPU's cluster links through proxies (module docstring);
    ``replica_lag_time_max``: the SPUs' setting (None: ``SpuConfig``'s default)."""
    async with trio.open_nursery() as nursery:
        cluster = TestCluster(Path(base), nursery, heartbeat_timeout, certs, policy,
                              proxied=proxied, replica_lag_time_max=replica_lag_time_max)
        await cluster.start_sc()
        for i in range(spus):
            await cluster.start_spu(first_id + i)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()


