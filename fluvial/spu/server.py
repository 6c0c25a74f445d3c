"""The SPU process: its configuration, and ``serve_spu``, which runs its listeners and SC link.

``serve_spu(config, task_status=)`` binds the public listener (``fluvial.spu.public``) and the
private one (``fluvial.spu.private``), then starts the link to the SC (``fluvial.spu.sc_link``)
and the housekeeping of the replicas it holds (``fluvial.spu.context.SpuContext``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from fluvial.access import private_bind_host
from fluvial.net.server import ServerLimits, listener_port, serve_tcp
from fluvial.net.tls import ClusterTls
from fluvial.spu.context import SpuContext
from fluvial.spu.private import private_api
from fluvial.spu.public import public_api
from fluvial.spu.sc_link import run_sc_link
from fluvial.spu.stream_sessions import run_stream_sessions


@dataclass
class SpuConfig:
    """One SPU's settings: its id and data directory, where the SC is, its listeners, the
    timings of its link and housekeeping, its size bounds, TLS and authorization policy."""

    spu_id: int
    data_dir: Path
    sc_host: str = "127.0.0.1"
    sc_port: int = 9004
    # more SCs (fluvial.sc.ha): the link tries (sc_host, sc_port), then these in turn
    sc_more: tuple[tuple[str, int], ...] = ()
    host: str = "127.0.0.1"
    public_port: int = 0
    private_port: int = 0
    private_host: str | None = None  # None: ``host`` with TLS, loopback in plaintext
    advertised_host: str | None = None
    advertised_private_port: int | None = None  # e.g. behind a proxy; default: the bound port
    rack: str | None = None
    heartbeat_seconds: float = 1.0
    replica_lag_time_max_seconds: float = 10.0
    checkpoint_seconds: float = 5.0
    retention_check_seconds: float = 60.0
    compaction_check_seconds: float = 5.0  # log cleaner passes over compacted topics
    verify_bytes_per_tick: int = 1 << 20  # sealed data CRC-checked per replica per housekeeping tick
    max_batch_bytes: int = 16 * 1024 * 1024
    max_fetch_bytes: int = 8 * 1024 * 1024  # a response holds at most this (or one whole batch)
    flush: str = "sync"
    limits: ServerLimits = field(default_factory=ServerLimits)
    tls: ClusterTls | None = None  # None: plaintext on every port
    policy: object | None = None  # fluvial.auth.Policy; None allows everything (no TLS)
    smartmodule_limits: object | None = None  # fluvial.smartmodule.engine.Limits; None: defaults


async def serve_spu(config: SpuConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run one SPU until cancelled. ``task_status.started((public_port, private_port))`` once both
    listeners are bound and the SC has accepted the registration and sent the assignments."""
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    async with trio.open_nursery() as nursery:
        ctx = SpuContext(config, nursery)
        try:
            tls = config.tls
            pub = await nursery.start(partial(
                serve_tcp, public_api(ctx), config.host, config.public_port,
                limits=config.limits, ssl_context=tls.public_server_context() if tls else None))
            priv = await nursery.start(partial(
                serve_tcp, private_api(ctx),
                private_bind_host(config.host, config.private_host, tls is not None), config.private_port,
                limits=config.limits, ssl_context=tls.private_server_context() if tls else None))
            ctx.public_port, ctx.private_port = listener_port(pub), listener_port(priv)
            await nursery.start(run_sc_link, ctx)
            nursery.start_soon(ctx.run_isr_checks)
            nursery.start_soon(ctx.run_housekeeping)
            nursery.start_soon(run_stream_sessions, ctx)
            task_status.started((ctx.public_port, ctx.private_port))
            await trio.sleep_forever()
        finally:
            ctx.close()
