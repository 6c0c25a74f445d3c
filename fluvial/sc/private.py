"""The SC's private API: SPUs register, watch their replica assignments, report replica state.

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

import trio

from fluvial.errors import OK, Error, ErrorCode
from fluvial.access import allowed, principal_of, speaks_for_spu
from fluvial.protocol import PLATFORM_VERSION
from fluvial.protocol import internal_api as ia
from fluvial.protocol.api import (
    API_VERSIONS_KEY, ApiVersionsResponse, encode_error_response, encode_response,
)
from fluvial.net.dispatch import decode_or_refuse
from fluvial.sc import controller as ctl
from fluvial.sc.state import MetadataSaveError, ScState, SpuLink

log = logging.getLogger("fluvial.sc")


MAX_PRIVATE_REQUEST_BYTES = 16 << 20  # a report of every replica of a big SPU fits


async def handle_request(state: ScState, auto_register: bool, conn, payload: bytes) -> None:
    decoded = await decode_or_refuse(conn, payload, ia.INTERNAL_SC_REQUESTS,
                                     MAX_PRIVATE_REQUEST_BYTES, "private ")
    if decoded is None:
        return
    header, req = decoded

    async def reply(resp):
        await conn.send(encode_response(resp, header.correlation_id, header.api_version))

    if header.api_key == API_VERSIONS_KEY:
        await reply(ApiVersionsResponse(OK, ia.advertise(ia.INTERNAL_SC_REQUESTS), PLATFORM_VERSION))
        return
    if not allowed(state.policy, conn, "member"):
        log.warning("private %s: %s is not a member; refused", conn.peer, principal_of(conn))
        await conn.send(encode_error_response(header.correlation_id, Error(ErrorCode.PermissionDenied)))
        conn.close()
        return
    registered = conn.state.get("spu_id")
    if isinstance(req, ia.RegisterSpuRequest):
        if state.policy is not None and not speaks_for_spu(conn, req.spu_id):
            log.warning("private %s: %s may not register as SPU %d", conn.peer, principal_of(conn), req.spu_id)
            await reply(ia.RegisterSpuResponse(Error(ErrorCode.PermissionDenied),
                                               f"certificate {principal_of(conn)!r} is not SPU {req.spu_id}"))
            return
        if registered is not None and registered != req.spu_id:
            await reply(ia.RegisterSpuResponse(Error(ErrorCode.SpuRegisterationFailed),
                                               "this connection belongs to another SPU"))
            return
        try:
            err = state.handle(ctl.SpuRegistered(req, auto_register))
        except MetadataSaveError as e:  # the SPU retries; nothing changed meanwhile
            await reply(ia.RegisterSpuResponse(Error(ErrorCode.StorageError), str(e)))
            return
        if not err.ok:
            await reply(ia.RegisterSpuResponse(err, f"SPU {req.spu_id} is not a registered member"))
            return
        old = state.links.get(req.spu_id)
        if old is not None:
            old.closed.set()
        link = SpuLink(req.spu_id, trio.current_time())
        state.links[req.spu_id] = link
        conn.state["spu_id"] = req.spu_id
        conn.state["link"] = link
        log.info("SPU %d online (%s)", req.spu_id, conn.peer)
        await reply(ia.RegisterSpuResponse(OK, None, state.lease_ms))
        await _watch_connection(state, conn, link)
        return
    link = conn.state.get("link")
    spu_id = getattr(req, "spu_id", None)
    if link is None or spu_id != registered:
        # not registered on this connection (or another SPU's id): refuse and hang up
        await conn.send(encode_error_response(header.correlation_id, Error(ErrorCode.PermissionDenied)))
        conn.close()
        return
    link.last_seen = trio.current_time()
    if isinstance(req, ia.ReportReplicasRequest):
        try:
            state.handle(ctl.SpuReported(req))
        except MetadataSaveError as e:
            # not recorded: the link stays, the SPU reports again on its next heartbeat
            log.error("SPU %d: report not recorded: %s", spu_id, e)
            await reply(ia.ReportReplicasResponse(Error(ErrorCode.StorageError)))
            return
        await reply(ia.ReportReplicasResponse(OK))
    elif isinstance(req, ia.WatchReplicasRequest):
        while not link.closed.is_set():
            link.assignments_changed = trio.Event()
            await reply(ctl.assignments_for(state, spu_id))
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
