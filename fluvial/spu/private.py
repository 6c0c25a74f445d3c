"""The SPU's private API: followers fetch from leaders, SPUs store consumer offsets.

Served by ``fluvial.net.dispatch.serve_api`` (``private_api``) behind ``private_gate``: only
cluster members may call it, and a private request names its sender (``follower_id`` /
``spu_id``): with TLS that must be the SPU the member certificate is for, else PermissionDenied.
Without TLS the private listener binds loopback unless configured otherwise
(``access.private_bind_host``). The replication handlers are ``fluvial.spu.replication``'s.
"""

from __future__ import annotations

import logging

from fluvial.access import principal_of, speaks_for_spu
from fluvial.errors import Error, ErrorCode
from fluvial.net.dispatch import ApiRegistry, RequestLimits, members_only, serve_api
from fluvial.net.server import Handler
from fluvial.protocol import internal_api as ia
from fluvial.spu.context import SpuContext
from fluvial.spu.replication import handle_offset_for_leader_epoch, serve_fetch_replicas

log = logging.getLogger("fluvial.spu")

MAX_PRIVATE_REQUEST_BYTES = 1 << 20  # followers' fetches and offset updates are tiny


def sender_of(req) -> int:
    """The SPU id a private request says it comes from."""
    if isinstance(req, ia.UpdateConsumerOffsetStoreRequest):
        return req.spu_id
    return req.follower_id


def private_gate(ctx: SpuContext, conn, header, req):
    """Members only; with TLS, a member speaks only for its own SPU (else PermissionDenied)."""
    refused = members_only(ctx, conn, header, req)
    if refused is not None:
        return refused
    if ctx.config.tls is not None and not speaks_for_spu(conn, sender_of(req)):
        log.warning("private %s: %s may not speak for SPU %d; refused", conn.peer, principal_of(conn),
                    sender_of(req))
        return type(req).Response(Error(ErrorCode.PermissionDenied))
    return None


async def handle_update_consumer_offset_store(ctx: SpuContext, conn, header,
                                              req: ia.UpdateConsumerOffsetStoreRequest
                                              ) -> ia.UpdateConsumerOffsetStoreResponse:
    """Another SPU stores a consumer offset through this one, the consumer-offset topic's leader."""
    if ctx.offset_store() is None:
        return ia.UpdateConsumerOffsetStoreResponse(Error(ErrorCode.PartitionNotLeader))
    return ia.UpdateConsumerOffsetStoreResponse(await ctx.store_consumer_offset(
        req.consumer_id, req.topic, req.partition, req.offset, req.delete))


PRIVATE_HANDLERS = {
    ia.InternalSpuApiKey.FetchReplicas: serve_fetch_replicas,
    ia.InternalSpuApiKey.OffsetForLeaderEpoch: handle_offset_for_leader_epoch,
    ia.InternalSpuApiKey.UpdateConsumerOffsetStore: handle_update_consumer_offset_store,
}


def private_api(ctx: SpuContext) -> Handler:
    """The ``serve_tcp`` handler of the SPU's private port."""
    return serve_api(ApiRegistry(ia.INTERNAL_SPU_REQUESTS), PRIVATE_HANDLERS,
                     RequestLimits(MAX_PRIVATE_REQUEST_BYTES), ctx, gate=private_gate, name="private")
