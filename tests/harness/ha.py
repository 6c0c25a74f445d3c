"""Several SCs over one etcd, in-process, for the HA tests (fluvial.sc.ha).

    with LocalEtcd(tmp) as etcd:
        async with open_ha_cluster(tmp_path, etcd.url, scs=2, spus=1) as cluster:
            cluster.controller()          # index of the SC acting as controller (or None)
            await cluster.stop_sc(i)      # cancel SC i (like a kill: its lease is not revoked)
            cluster.admin(i)              # an ScAdmin on SC i's public port

Every SC and SPU binds 127.0.0.1 port 0; SPUs know every SC's private port and rotate.
``prefix`` keeps tests sharing one etcd apart.
"""

from __future__ import annotations

import itertools
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from fluvial.sc.ha import EtcdSettings, Role, serve_sc_etcd
from fluvial.sc.server import ScConfig
from fluvial.spu.server import SpuConfig, serve_spu
from fluvial.errors import FluvialError
from harness.client import ScAdmin, wait_until

_prefixes = itertools.count()


@dataclass
class HaMember:
    config: object
    role: Role | None = None
    ports: tuple[int, int] = (0, 0)
    scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)


class HaCluster:
    __test__ = False

    def __init__(self, base: Path, nursery: trio.Nursery, settings: EtcdSettings, heartbeat_timeout: float):
        self.base, self.nursery, self.settings = base, nursery, settings
        self.heartbeat_timeout = heartbeat_timeout
        self.scs: list[HaMember] = []
        self.spus: dict[int, HaMember] = {}

    async def _run(self, m: HaMember, serve, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as scope:
                m.scope = scope
                await serve(task_status=task_status)
        finally:
            m.done.set()

    async def start_sc(self, i: int | None = None, settings: EtcdSettings | None = None) -> int:
        if i is None:
            cfg = ScConfig(data_dir=self.base / f"sc{len(self.scs)}", public_port=0, private_port=0,
                           heartbeat_timeout_seconds=self.heartbeat_timeout)
            self.scs.append(HaMember(cfg))
            i = len(self.scs) - 1
        m = self.scs[i] = HaMember(self.scs[i].config, Role())
        serve = partial(serve_sc_etcd, m.config, settings or self.settings, role=m.role)
        m.ports = await self.nursery.start(self._run, m, serve)
        m.config.public_port, m.config.private_port = m.ports
        return i

    async def stop_sc(self, i: int) -> None:
        await self._stop(self.scs[i])

    def controller(self) -> int | None:
        acting = [i for i, m in enumerate(self.scs) if not m.done.is_set() and m.role.acting]
        assert len(acting) <= 1, f"two SCs act as controller: {acting}"
        return acting[0] if acting else None

    async def wait_controller(self, timeout: float, other_than: int | None = None) -> int:
        async def found():
            c = self.controller()
            return c is not None and c != other_than and (c,)
        return (await wait_until(found, "an acting controller", timeout))[0]

    async def wait_spus_seen(self, spus: set[int], timeout: float) -> None:
        """Until every running SC lists ``spus`` online (a standby SC learns it by its watch)."""
        async def seen():
            for i, m in enumerate(self.scs):
                if not m.done.is_set() and not spus <= await self.admin(i).online_spus():
                    return False
            return True
        await wait_until(seen, f"every SC seeing SPUs {sorted(spus)} online", timeout)

    def admin(self, i: int, timeout: float = 10.0) -> ScAdmin:
        return ScAdmin("127.0.0.1", self.scs[i].ports[0], timeout=timeout)

    async def start_spu(self, spu_id: int) -> None:
        m = self.spus.get(spu_id)
        cfg = m.config if m else SpuConfig(spu_id=spu_id, data_dir=self.base / f"spu-{spu_id}",
                                           heartbeat_seconds=0.2)
        privs = [("127.0.0.1", sc.ports[1]) for sc in self.scs]
        cfg.sc_host, cfg.sc_port = privs[0]
        cfg.sc_more = tuple(privs[1:])
        m = self.spus[spu_id] = HaMember(cfg)
        m.ports = await self.nursery.start(self._run, m, partial(serve_spu, cfg))
        cfg.public_port, cfg.private_port = m.ports

    async def stop_spu(self, spu_id: int) -> None:
        await self._stop(self.spus[spu_id])

    @staticmethod
    async def _stop(m: HaMember) -> None:
        if m.scope is not None:
            m.scope.cancel()
            await m.done.wait()


def unique_prefix(name: str = "t") -> str:
    return f"/fluvial-test-{name}-{next(_prefixes)}"


@asynccontextmanager
async def open_ha_cluster(base: Path, etcd_url: str, *, scs: int = 2, spus: int = 1,
                          lease: float = 1.0, heartbeat_timeout: float = 2.0, prefix: str | None = None):
    """``scs`` SCs on ``etcd_url`` under a fresh prefix (one acting as controller once this
    yields) and ``spus`` SPUs (5001, ...) registered with it."""
    settings = EtcdSettings(etcd_url, prefix or unique_prefix(), lease)
    async with trio.open_nursery() as nursery:
        cluster = HaCluster(Path(base), nursery, settings, heartbeat_timeout)
        for _ in range(scs):
            await cluster.start_sc()
        if scs:
            await cluster.wait_controller(10 * lease + 10)
        for i in range(spus):
            await cluster.start_spu(5001 + i)
        if spus:
            await cluster.wait_spus_seen(set(range(5001, 5001 + spus)), 10 * lease + 10)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()


class ThreadedProxies:
    """``TcpProxy``s to every etcd member, run by a trio loop in their own thread.

    An SC saves with a blocking etcd request made on its trio thread (fluvial.sc.etcd), so a
    proxy in the same trio run could not forward it: these run apart. ``url`` is the
    ``etcd://`` through them; ``cut()``/``heal()`` act on all of them (thread-safe).
    """

    def __init__(self, endpoints: list[tuple[str, int]]):
        from harness.proxy import TcpProxy

        self.proxies = [TcpProxy(ep) for ep in endpoints]
        self._ready = threading.Event()
        self._token = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for p in self.proxies:
                await nursery.start(p.serve)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{p.port}" for p in self.proxies)

    def _each(self, method: str) -> None:
        """Call ``method`` on every proxy in their thread and wait until done (callable from
        any thread, a trio one included: the proxies' loop never waits on the caller)."""
        done = threading.Event()

        def run():
            for p in self.proxies:
                getattr(p, method)()
            done.set()
        self._token.run_sync_soon(run)
        if not done.wait(10):
            raise RuntimeError(f"the proxies did not {method}")

    def cut(self) -> None:
        self._each("cut")

    def heal(self) -> None:
        self._each("heal")

    def __enter__(self) -> ThreadedProxies:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxies did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._token.run_sync_soon(self._stop.set)
        self._thread.join(10)


class HaAdmin(ScAdmin):
    """An ``ScAdmin`` over several SCs: a call that cannot reach one SC goes to the next."""

    def __init__(self, endpoints: list[tuple[str, int]], *, timeout: float = 10.0):
        super().__init__(*endpoints[0], timeout=timeout)
        self.endpoints = list(endpoints)

    async def call(self, req):
        last = None
        for _ in range(len(self.endpoints)):
            self.host, self.port = self.endpoints[0]
            try:
                return await super().call(req)
            except (FluvialError, OSError) as e:
                last = e
                self.endpoints.append(self.endpoints.pop(0))
        raise last


def process_controller(cluster) -> str | None:
    """The member name (``sc``, ``sc-1`` ...) of the SC holding the election key of a
    ``ProcessCluster`` started with ``--sc N --etcd``; None while nobody holds it."""
    from fluvial.sc.election import election_key
    from fluvial.sc.etcd import DEFAULT_PREFIX, EtcdClient

    members = cluster.members()
    etcd = [("127.0.0.1", m["public_port"]) for m in members if m["kind"] == "etcd"]
    kv = EtcdClient(etcd, timeout=1.0).get(election_key(DEFAULT_PREFIX))
    if kv is None:
        return None
    port = int(kv.value.decode().rpartition(":")[2])
    for m in members:
        if m["kind"] == "sc" and m["public_port"] == port:
            return "sc" if not m["id"] else f"sc-{m['id']}"
    return None
