"""The SPU's link to the SC: register, watch the replica assignments, report, renew the lease.

``run_sc_link`` keeps one session at a time: register (the SC grants the leader lease's length),
watch the replica assignments (the SC pushes this SPU's complete desired state; each push is
applied with ``SpuContext.apply``, and the first after a registration also removes orphan replica
directories), and report replica state on every change and at least every ``heartbeat_seconds``:
only the replicas whose state changed since the SC last acknowledged a report
(``fluvial.spu.reports``), the full state at the start of each session and after a refusal.
Each report the SC answers OK renews the lease from its *send* time. If the SC goes away the SPU
keeps serving what it has and reconnects. With several SCs (``SpuConfig.sc_more``, fluvial.sc.ha)
it tries the next one after every failure: only the controller accepts it.
"""

from __future__ import annotations

import logging

import trio

from fluvial.protocol import internal_api as ia
from fluvial.spu.context import SpuContext, describe
from fluvial.spu.reports import ReportDeltas

log = logging.getLogger("fluvial.spu")

MAX_RETRY_SECONDS = 2.0  # the longest pause between attempts on the one SC
# with several SCs, between rounds: the refusals of the SCs that are not the controller are
# cheap, and the SPU should find a new controller soon after it is elected (fluvial.sc.ha)
MAX_ROUND_SECONDS = 0.5


def sc_endpoints(cfg) -> list[tuple[str, int]]:
    return [(cfg.sc_host, cfg.sc_port), *cfg.sc_more]


async def _sc_session(ctx: SpuContext, registered: trio.Event, sc: tuple[str, int],
                      up: trio.Event) -> None:
    """One connection's worth: register, watch and apply pushes, report; ``registered`` and
    ``up`` are set once the first push is applied."""
    cfg = ctx.config
    host = cfg.advertised_host or cfg.host
    async with ctx.connect_member(*sc) as conn:
        await conn.handshake()
        resp = await conn.call(ia.RegisterSpuRequest(
            cfg.spu_id, host, ctx.public_port, host,
            cfg.advertised_private_port or ctx.private_port, cfg.rack), timeout=30)
        if not resp.error_code.ok:
            raise RuntimeError(f"SC refused registration: {resp.message or resp.error_code.message}")
        ctx.lease.seconds = resp.lease_ms / 1000
        log.info("spu %d registered with SC %s:%d (leader lease %d ms)", cfg.spu_id, *sc,
                 resp.lease_ms)

        async def reporter():
            deltas = ReportDeltas()  # a new session: the first report is the full state
            while True:
                sent_at = trio.current_time()
                full = ctx.report()
                changed = deltas.delta(full.replicas)
                answer = await conn.call(ia.ReportReplicasRequest(full.spu_id, changed), timeout=30)
                if answer.error_code.ok:
                    deltas.acknowledged(changed)
                    ctx.lease.renew(sent_at)  # counted from the send: a slow answer only shortens it
                else:
                    deltas.reset()  # not recorded: the next report is the full state
                    log.warning("spu %d: the SC refused a report: %s", cfg.spu_id, answer.error_code)
                with trio.move_on_after(cfg.heartbeat_seconds):
                    await ctx.report_wanted.wait()
                ctx.report_wanted = trio.Event()

        async with trio.open_nursery() as n:
            first = True
            async with conn.open_stream(ia.WatchReplicasRequest(cfg.spu_id)) as stream:
                async for push in stream:
                    await ctx.apply_push(push)
                    if first:
                        first = False
                        ctx.remove_orphans(push)
                        n.start_soon(reporter)
                        registered.set()
                        up.set()
            n.cancel_scope.cancel()


async def run_sc_link(ctx: SpuContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Keep a session with the SC for ever, reconnecting (with backoff) whatever breaks it;
    ``task_status.started()`` once the first session has registered and applied a push."""
    registered = trio.Event()
    started = False
    delay = 0.1
    endpoints = sc_endpoints(ctx.config)
    turn = 0
    while True:
        sc = endpoints[turn % len(endpoints)]
        up = trio.Event()
        try:
            async with trio.open_nursery() as n:
                n.start_soon(_sc_session, ctx, registered, sc, up)
                if not started:
                    await registered.wait()
                    task_status.started()
                    started = True
        except Exception as e:  # noqa: BLE001 - the link is retried whatever broke it
            log.warning("spu %d: SC link lost: %s; retrying", ctx.spu_id, describe(e))
        if up.is_set():  # a session that worked: start the backoff again
            delay = 0.1
        turn += 1
        if turn % len(endpoints) == 0:  # back off once per round over the SCs
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS if len(endpoints) == 1 else MAX_ROUND_SECONDS)
