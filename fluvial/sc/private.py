"""The SC's private API: SPUs register, watch their replica assignments, report replica state.

Served by ``fluvial.net.dispatch.serve_api`` (``private_api``) behind ``private_gate``: only
cluster members may call it; with TLS a member registers only as the SPU its certificate is for;
every request but RegisterSpu comes on a connection registered as the SPU it names, else
PermissionDenied and the connection is hung up on.

A private connection belongs to one SPU once it has registered. When it closes, or when no
report arrives within the heartbeat timeout, the SPU is marked offline (fluvial.sc.server runs the
timeout check on a monotonic clock).

The registration answer carries the SPU's leader lease (``ScState.lease_ms``,
``controller.leader_lease_ms``). A report or registration the SC cannot save is answered with
StorageError and nothing changes; entries of a report that do not match the SC's view are skipped.
Neither closes the connection: only a protocol violation drops an SPU's link.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from fluvial.access import principal_of, speaks_for_spu
from fluvial.errors import OK, Error, ErrorCode
from fluvial.net.dispatch import ApiRegistry, Refusal, RequestLimits, members_only, send_reply, serve_api
from fluvial.net.server import Handler
from fluvial.protocol import internal_api as ia
from fluvial.sc import controller as ctl
from fluvial.sc.pushes import same_push
from fluvial.sc.state import MetadataSaveError, ScState, SpuLink

log = logging.getLogger("fluvial.sc")


MAX_PRIVATE_REQUEST_BYTES = 16 << 20  # a report of every replica of a big SPU fits


def private_gate(state: ScState, conn, header, req):
    """Members only. With TLS, a member registers only as its own SPU (else a PermissionDenied
    registration answer); any other request needs this connection registered as the SPU the
    request names (else PermissionDenied, hung up on)."""
    refused = members_only(state, conn, header, req)
    if refused is not None:
        return refused
    if isinstance(req, ia.LookupSmartModuleRequest):
        return None  # read-only, and a member may ask on a connection of its own
    if isinstance(req, ia.RegisterSpuRequest):
        if state.policy is not None and not speaks_for_spu(conn, req.spu_id):
            log.warning("private %s: %s may not register as SPU %d", conn.peer, principal_of(conn),
                        req.spu_id)
            return ia.RegisterSpuResponse(Error(ErrorCode.PermissionDenied),
                                          f"certificate {principal_of(conn)!r} is not SPU {req.spu_id}")
        return None
    if conn.state.get("link") is None or req.spu_id != conn.state.get("spu_id"):
        return Refusal(Error(ErrorCode.PermissionDenied), close=True)
    return None


async def handle_register_spu(state: ScState, conn, header, req: ia.RegisterSpuRequest, *,
                              auto_register: bool) -> ia.RegisterSpuResponse | None:
    """Registers the SPU on this connection, answers with its lease, then runs on until the
    connection or the link closes (``_watch_connection``)."""
    registered = conn.state.get("spu_id")
    if registered is not None and registered != req.spu_id:
        return ia.RegisterSpuResponse(Error(ErrorCode.SpuRegisterationFailed),
                                      "this connection belongs to another SPU")
    try:
        err = state.handle(ctl.SpuRegistered(req, auto_register))
    except MetadataSaveError as e:  # the SPU retries; nothing changed meanwhile
        return ia.RegisterSpuResponse(Error(ErrorCode.StorageError), str(e))
    if not err.ok:
        return ia.RegisterSpuResponse(err, f"SPU {req.spu_id} is not a registered member")
    old = state.links.get(req.spu_id)
    if old is not None:
        old.closed.set()
    link = SpuLink(req.spu_id, trio.current_time())
    state.links[req.spu_id] = link
    conn.state["spu_id"] = req.spu_id
    conn.state["link"] = link
    log.info("SPU %d online (%s)", req.spu_id, conn.peer)
    await send_reply(conn, header, ia.RegisterSpuResponse(OK, None, state.lease_ms))
    await _watch_connection(state, conn, link)
    return None


def _seen(conn) -> SpuLink:
    """The link of the SPU registered on ``conn`` (``private_gate`` checked), heard from now."""
    link = conn.state["link"]
    link.last_seen = trio.current_time()
    return link


async def handle_report_replicas(state: ScState, conn, header,
                                 req: ia.ReportReplicasRequest) -> ia.ReportReplicasResponse:
    _seen(conn)
    try:
        state.handle(ctl.SpuReported(req))
    except MetadataSaveError as e:
        # not recorded: the link stays, the SPU reports again on its next heartbeat
        log.error("SPU %d: report not recorded: %s", req.spu_id, e)
        return ia.ReportReplicasResponse(Error(ErrorCode.StorageError))
    return ia.ReportReplicasResponse(OK)


async def handle_watch_replicas(state: ScState, conn, header, req: ia.WatchReplicasRequest) -> None:
    """Sends the SPU its assignments, and again on every change, until its link closes."""
    link = _seen(conn)
    last = None
    while not link.closed.is_set():
        link.assignments_changed = trio.Event()
        push = ctl.assignments_for(state, req.spu_id)
        if not same_push(last, push):  # another SPU's change, or none at all: nothing to send
            await send_reply(conn, header, push)
            last = push
        await link.assignments_changed.wait()


async def _watch_connection(state: ScState, conn, link: SpuLink) -> None:
    """Runs on in the Register handler: when the connection goes, the SPU goes offline. When the
    SC fails the SPU first (missed heartbeats) or the SPU registers on another connection, the
    link closes and so does this connection: a stalled SPU that wakes up then sees its SC link
    drop, registers again and learns its new role, instead of serving a stale assignment on a
    connection the SC no longer listens to."""
    try:
        async with trio.open_nursery() as nursery:
            async def close_when_link_closes() -> None:
                await link.closed.wait()
                conn.close()

            nursery.start_soon(close_when_link_closes)
            await conn.closed.wait()
            nursery.cancel_scope.cancel()
    finally:
        if state.links.get(link.spu_id) is link:
            del state.links[link.spu_id]
            link.closed.set()
            log.warning("SPU %d offline (private connection closed)", link.spu_id)
            state.fail_spu(link.spu_id)


def find_smartmodule(state: ScState, name: str):
    """The SmartModule object ``name`` names: its store key, its ``group/name@version``, or its
    package name when exactly one module has it; None otherwise."""
    store = state.stores.get("SmartModule")
    if store is None:
        return None
    if name in store:
        return store.get(name)
    by_fqdn = [o for o in store.values() if o.spec.fqdn(o.name) == name]
    if by_fqdn:
        return by_fqdn[0]
    by_name = [o for o in store.values() if o.spec.meta is not None and o.spec.meta.package.name == name]
    return by_name[0] if len(by_name) == 1 else None


async def handle_lookup_smartmodule(state: ScState, conn, header, req: ia.LookupSmartModuleRequest
                                    ) -> ia.LookupSmartModuleResponse:
    obj = find_smartmodule(state, req.name)
    if obj is None:
        return ia.LookupSmartModuleResponse(Error(ErrorCode.SmartModuleNotFound, (req.name,)), b"")
    return ia.LookupSmartModuleResponse(OK, obj.spec.wasm.payload)


def private_api(state: ScState, auto_register: bool, gate=private_gate) -> Handler:
    """The ``serve_tcp`` handler of the SC's private port; ``auto_register``: an SPU the SC does
    not know becomes a member when it registers (``controller.SpuRegistered``); ``gate``: the
    check before every request (``private_gate``, or fluvial.sc.ha's controller gate around it)."""
    handlers = {
        ia.InternalScApiKey.RegisterSpu: partial(handle_register_spu, auto_register=auto_register),
        ia.InternalScApiKey.WatchReplicas: handle_watch_replicas,
        ia.InternalScApiKey.ReportReplicas: handle_report_replicas,
        ia.InternalScApiKey.LookupSmartModule: handle_lookup_smartmodule,
    }
    return serve_api(ApiRegistry(ia.INTERNAL_SC_REQUESTS), handlers,
                     RequestLimits(MAX_PRIVATE_REQUEST_BYTES), state, gate=gate, name="private")
