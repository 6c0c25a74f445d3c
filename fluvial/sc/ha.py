"""An SC among several, with its metadata in etcd (``fluvial run sc --metadata etcd://...``).

``serve_sc_etcd(config, task_status=)`` runs what ``serve_sc`` runs, over an ``EtcdBackend``
(fluvial.sc.etcd), plus three tasks:

* the **watch** folds every change another SC saves into this SC's stores (``apply_remote``), so
  every SC serves reads from a current cache and wakes its watchers as the file-backed SC does;
* the **elector** campaigns for the controller key (fluvial.sc.election) and, while it holds it,
  keeps the lease alive and this SC acting as the controller (``Role``);
* the **failure detector**, which only runs while this SC is the controller.

Only the controller accepts SPUs on its private port: the others answer a registration with an
error naming the reason, and the SPU tries its next SC endpoint. Every SC accepts admin writes
(topic create, delete, ...): they are decided on its cache and saved by a revision-guarded
transaction, so of two SCs creating the same topic exactly one succeeds; the other reads the keys
again and answers that the topic exists (``retrying_after_a_conflict``). The controller learns
the new topic from its watch and assigns it.

When the controller's lease clock runs out or etcd says its lease is gone, it stops acting: it
drops its SPU links (their SPUs go looking for the new controller) and clears its write guard,
then campaigns again.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from fluvial.errors import Error, ErrorCode
from fluvial.net.dispatch import Refusal
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_api as sa
from fluvial.sc import controller as ctl
from fluvial.sc import private, public
from fluvial.sc.election import (DEFAULT_LEASE_SECONDS, Holding, LeaseClock, campaign_result,
                                 campaign_txn, election_key)
from fluvial.sc.etcd import (DEFAULT_PREFIX, Change, EtcdBackend, EtcdClient, EtcdError, WatchCompacted,
                             parse_endpoints)
from fluvial.sc.producer_ids import SharedProducerIds
from fluvial.sc.server import new_state, start_listeners
from fluvial.sc.state import MetadataSaveError, ScState

log = logging.getLogger("fluvial.sc.ha")

WATCH_RETRY_SECONDS = 0.2
WATCHDOG_TICK_SECONDS = 0.05  # how often the controller checks its lease clock
OPEN_TIMEOUT_SECONDS = 60.0
WRITES = (sa.ScApiKey.Create, sa.ScApiKey.Delete, sa.ScApiKey.Update)


@dataclass
class EtcdSettings:
    url: str  # etcd://h1:2379,h2:2379
    prefix: str = DEFAULT_PREFIX
    lease_seconds: float = DEFAULT_LEASE_SECONDS


@dataclass
class Role:
    """Whether this SC acts as the controller now."""

    acting: bool = False
    holding: Holding | None = None
    terms: int = 0  # how many times this SC became the controller
    detecting: bool = False  # the failure detector's tick is running (``_failing_by_the_detector``)

    def switch(self, acting: bool, holding: Holding | None) -> None:
        self.acting, self.holding = acting, holding
        self.terms += acting


# ------------------------------------------------------------------------- remote changes


@contextmanager
def _unsaved(backend: EtcdBackend):
    """Inside: ``backend.save`` writes nothing (the changes came from etcd)."""
    save = backend.save
    backend.save = lambda batch, changed=None: None
    try:
        yield
    finally:
        backend.save = save


def apply_remote(state: ScState, backend: EtcdBackend, events) -> None:
    """Fold watched etcd events into the stores as one transaction that saves nothing, so
    watchers, waiters and (on the controller) the SPUs hear of them."""
    apply_changes(state, backend, backend.accept(events))


def apply_changes(state: ScState, backend: EtcdBackend, changes: list[Change]) -> None:
    if not changes:
        return
    with _unsaved(backend), state.transaction():
        for c in changes:
            store = state.stores[c.label]
            if c.obj is None:
                store.delete(c.name)
            else:
                store.write(c.name, c.obj, False)


async def _watch(state: ScState, backend: EtcdBackend, client: EtcdClient) -> None:
    token = trio.lowlevel.current_trio_token()

    def on_events(events) -> None:
        trio.from_thread.run_sync(apply_remote, state, backend, events, trio_token=token)

    while True:
        try:
            await trio.to_thread.run_sync(client.watch, backend.prefix, backend.revision + 1,
                                          on_events, abandon_on_cancel=True)
        except WatchCompacted as e:
            log.warning("%s: reading every object again", e)
            try:
                kvs, rev = await trio.to_thread.run_sync(client.range_prefix, backend.prefix,
                                                         abandon_on_cancel=True)
                apply_changes(state, backend, backend.resync(kvs, rev))
                backend.revision = max(backend.revision, rev)
            except EtcdError as e2:
                log.warning("etcd read failed: %s", e2)
        except EtcdError as e:
            log.warning("etcd watch broke (%s); watching again from revision %d", e, backend.revision + 1)
        finally:
            client.close_watch()
        await trio.sleep(WATCH_RETRY_SECONDS)


# ------------------------------------------------------------------------------ controller


def retrying_after_a_conflict(backend: EtcdBackend, handler):
    """A public handler that, when its save lost a compare (another SC changed those keys
    first), reads the keys it wrote, folds them in (as the watch would, only now) and handles
    the request once more: of two SCs creating one topic, the second then answers that it
    already exists, and a write that lost to an unrelated change goes through."""
    async def handle(state: ScState, conn, header, req):
        seen = backend.conflicts
        answer = await handler(state, conn, header, req)
        if backend.conflicts == seen or not (isinstance(answer, sa.Status)
                                             and answer.error_code.code == ErrorCode.StorageError):
            return answer
        try:
            found, rev = await trio.to_thread.run_sync(backend.client.read_keys, backend.conflict_keys)
        except EtcdError:
            return answer
        apply_changes(state, backend, backend.fresh(found, rev))
        log.info("a write lost to another SC's; handling it again on the keys as they are now")
        return await handler(state, conn, header, req)
    return handle


def public_handlers(backend: EtcdBackend) -> dict:
    """The public API's handlers, the writing ones retried after a conflict."""
    return {key: retrying_after_a_conflict(backend, h) if key in WRITES else h
            for key, h in public.HANDLERS.items()}


def controller_gate(role: Role):
    """The private port's gate: only the acting controller takes SPUs."""
    def gate(state: ScState, conn, header, req):
        if not role.acting:
            if isinstance(req, ia.RegisterSpuRequest):
                return ia.RegisterSpuResponse(Error(ErrorCode.SpuRegisterationFailed),
                                              "this SC is not the controller; try another SC")
            return Refusal(Error(ErrorCode.SpuRegisterationFailed), close=True)
        return private.private_gate(state, conn, header, req)
    return gate


def _drop_links(state: ScState) -> None:
    """Close every SPU link without failing the SPUs (the next controller decides)."""
    links = list(state.links.values())
    state.links.clear()
    for link in links:
        link.closed.set()


async def _become_controller(state: ScState, backend: EtcdBackend, role: Role, holding: Holding,
                             clock: LeaseClock) -> bool:
    """Start acting (every SPU awaited, ``ControllerTookOver``); False if the lease clock ran
    out first."""
    backend.guard = holding.guard()
    state.failed_spus.clear()  # marks from an earlier term: every SPU is awaited afresh
    while True:
        if not clock.may_act(time.monotonic()):
            return False
        try:
            state.handle(ctl.ControllerTookOver())
            break
        except MetadataSaveError as e:  # the cache lags etcd: let the watch catch up
            log.info("taking over: %s; retrying", e)
            await trio.sleep(WATCH_RETRY_SECONDS)
    state.started_at = trio.current_time()
    role.switch(True, holding)
    log.warning("this SC is now the controller (lease %x, revision %d)", holding.lease,
                holding.create_revision)
    return True


def _step_down(state: ScState, backend: EtcdBackend, role: Role, why: str) -> None:
    was = role.acting
    role.switch(False, None)
    _drop_links(state)
    backend.guard = []
    if was:
        log.warning("this SC stopped acting as the controller: %s", why)


def keep_alive(client: EtcdClient, clock: LeaseClock, lease: int, stop: threading.Event) -> str:
    """Blocking (run in a thread): a keepalive every ``clock.keepalive_interval``, each one that
    etcd answers renewing ``clock`` from its send time, until ``stop`` or the lease is gone;
    returns why it ended. In a thread of its own, with ``time.monotonic``, so that the clock is
    renewed even while a save blocks the SC's trio loop (a lost etcd leader holds requests up
    to an election)."""
    while not stop.wait(clock.keepalive_interval):
        sent = time.monotonic()
        try:
            ttl = client.lease_keepalive(lease)
        except EtcdError as e:
            log.warning("lease keepalive failed: %s", e)
            continue
        if ttl <= 0:
            return "etcd says the lease has expired"
        clock.renewed(sent)
    return "stopping"


async def _hold(client: EtcdClient, clock: LeaseClock, holding: Holding) -> str:
    """Keep the lease alive until it is lost or the lease clock runs out; returns why."""
    stop = threading.Event()
    ended: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            async def keeper() -> None:
                ended.append(await trio.to_thread.run_sync(keep_alive, client, clock, holding.lease, stop,
                                                           abandon_on_cancel=True))
            nursery.start_soon(keeper)
            while not ended and clock.may_act(time.monotonic()):
                await trio.sleep(max(0.0, min(WATCHDOG_TICK_SECONDS, clock.acting_until - time.monotonic())))
            nursery.cancel_scope.cancel()
    finally:
        stop.set()
    return ended[0] if ended else "lease clock ran out"


async def _elector(state: ScState, backend: EtcdBackend, client: EtcdClient, role: Role,
                   settings: EtcdSettings, candidate: str) -> None:
    key = election_key(settings.prefix)
    poll = max(0.05, settings.lease_seconds / 10)
    while True:
        try:
            holder = await trio.to_thread.run_sync(client.get, key, abandon_on_cancel=True)
            if holder is not None:
                await trio.sleep(poll)
                continue
            sent = time.monotonic()
            lease = await trio.to_thread.run_sync(client.lease_grant, settings.lease_seconds,
                                                  abandon_on_cancel=True)
            ok, answer = await trio.to_thread.run_sync(client.txn, *campaign_txn(key, candidate, lease),
                                                       abandon_on_cancel=True)
        except EtcdError as e:
            log.warning("election: %s", e)
            await trio.sleep(poll)
            continue
        holding = campaign_result(key, lease, ok, answer)
        if holding is None:
            continue
        clock = LeaseClock(settings.lease_seconds)
        clock.renewed(sent)
        why = "stopping"
        try:
            if await _become_controller(state, backend, role, holding, clock):
                why = await _hold(client, clock, holding)
            else:
                why = "lease clock ran out while taking over"
        finally:
            _step_down(state, backend, role, why)
        with trio.move_on_after(1):
            try:
                await trio.to_thread.run_sync(client.lease_revoke, holding.lease, abandon_on_cancel=True)
            except EtcdError:
                pass


def _failing_by_the_detector(state: ScState, role: Role):
    """``ScState.fail_spu`` for an SC among several. A closed SPU connection does not fail the
    SPU at once: it is marked for the failure detector (``failed_spus``; ``ctl.due_failures``
    fails a marked SPU without a link on its next tick, a quarter of the heartbeat timeout
    later). The detector runs only while this SC acts as the controller, so the connections
    that close because this SC stops or steps down fail nobody: the next controller decides,
    and it awaits every SPU."""
    fail = state.fail_spu

    def fail_spu(spu_id: int) -> None:
        if role.detecting:
            fail(spu_id)
        elif role.acting:
            state.failed_spus.add(spu_id)
    return fail_spu


async def _failure_detector(state: ScState, role: Role, timeout: float) -> None:
    while True:
        await trio.sleep(timeout / 4)
        if role.acting:
            role.detecting = True
            try:
                state.check_failures(trio.current_time(), timeout)
            finally:
                role.detecting = False


# ---------------------------------------------------------------------------------- serve


async def serve_sc_etcd(config, settings: EtcdSettings, *, role: Role | None = None,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Like ``serve_sc`` (fluvial.sc.server), with the metadata in etcd and the controller
    elected; ``role`` (for tests) shows whether this SC is acting."""
    endpoints = parse_endpoints(settings.url)
    backend = EtcdBackend(EtcdClient(endpoints), settings.prefix)
    with trio.fail_after(OPEN_TIMEOUT_SECONDS):
        while True:  # etcd may be starting with us (``fluvial cluster resume``)
            try:
                await trio.to_thread.run_sync(backend.open, abandon_on_cancel=True)
                break
            except EtcdError as e:
                log.warning("waiting for etcd: %s", e)
                await trio.sleep(0.5)
    state = new_state(config, backend)
    state.producer_ids = SharedProducerIds(backend.reserve_producer_ids)
    role = role or Role()
    state.fail_spu = _failing_by_the_detector(state, role)
    async with trio.open_nursery() as nursery:
        ports = await start_listeners(nursery, state, config, gate=controller_gate(role),
                                      public_handlers=public_handlers(backend))
        nursery.start_soon(_watch, state, backend, EtcdClient(endpoints))
        nursery.start_soon(_elector, state, backend, EtcdClient(endpoints), role, settings,
                           f"{config.host}:{ports[0]}")
        nursery.start_soon(_failure_detector, state, role, config.heartbeat_timeout_seconds)
        log.info("SC listening: public %d, private %d; metadata in etcd %s under %s", *ports,
                 settings.url, settings.prefix)
        task_status.started(ports)
