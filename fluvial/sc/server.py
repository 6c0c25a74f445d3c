"""The SC process: public and private listeners over one ScState.

``serve_sc(config, task_status=)`` loads the stores from the data dir, binds both listeners and
reports ``(public_port, private_port)``. A background task marks SPUs offline whose last report
is older than ``heartbeat_timeout_seconds`` (trio's clock is monotonic).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from fluvial.net.server import ServerLimits, listener_port, serve_tcp
from fluvial.access import private_bind_host
from fluvial.net.tls import ClusterTls
from fluvial.sc import controller as ctl
from fluvial.sc import private, public
from fluvial.sc.backend import FileBackend
from fluvial.sc.producer_ids import ProducerIdAllocator, ProducerIdsCorrupt
from fluvial.sc.state import ScState

log = logging.getLogger("fluvial.sc")


@dataclass
class ScConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    public_port: int = 9003
    private_port: int = 9004
    private_host: str | None = None  # None: ``host`` with TLS, loopback without (access.private_bind_host)
    auto_register_spus: bool = True
    heartbeat_timeout_seconds: float = 10.0
    limits: ServerLimits = field(default_factory=ServerLimits)
    tls: ClusterTls | None = None  # None: plaintext on both ports
    policy: object | None = None  # fluvial.auth.Policy; None allows everything (no TLS)


async def _failure_detector(state: ScState, timeout: float) -> None:
    """An SPU fails when its private connection closes (fluvial.sc.private) or when it sends
    nothing for ``timeout`` seconds; an SPU that does not come back within ``timeout`` of an SC
    start is failed too, so its partitions elect new leaders (``ctl.due_failures`` decides)."""
    while True:
        await trio.sleep(timeout / 4)
        state.check_failures(trio.current_time(), timeout)


def new_state(config: ScConfig, backend) -> ScState:
    """The SC's state over ``backend``, loaded, with the config's policy and SPU lease."""
    state = ScState(backend)
    state.policy = config.policy
    state.lease_ms = ctl.leader_lease_ms(config.heartbeat_timeout_seconds)
    state.load()
    try:
        state.producer_ids = ProducerIdAllocator(Path(config.data_dir) / "producer_ids")
    except (ProducerIdsCorrupt, OSError) as e:  # no ids rather than ids that may repeat
        log.error("idempotent producers are off: %s", e)
        state.producer_ids = None
    return state


async def start_listeners(nursery: trio.Nursery, state: ScState, config: ScConfig,
                          gate=private.private_gate, public_handlers=None) -> tuple[int, int]:
    """Bind the public and private listeners in ``nursery``; returns their ports. ``gate``:
    the private port's check, ``public_handlers`` the public API's handlers (fluvial.sc.ha
    passes its variants)."""
    tls = config.tls
    pub = await nursery.start(partial(
        serve_tcp, public.public_api(state, public_handlers), config.host, config.public_port,
        limits=config.limits, ssl_context=tls.public_server_context() if tls else None))
    priv = await nursery.start(partial(
        serve_tcp, private.private_api(state, config.auto_register_spus, gate=gate),
        private_bind_host(config.host, config.private_host, config.tls is not None),
        config.private_port, limits=config.limits,
        ssl_context=tls.private_server_context() if tls else None))
    return listener_port(pub), listener_port(priv)


async def serve_sc(config: ScConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    state = new_state(config, FileBackend(Path(config.data_dir) / "metadata"))
    state.handle(ctl.ScStarted())
    state.started_at = trio.current_time()
    async with trio.open_nursery() as nursery:
        ports = await start_listeners(nursery, state, config)
        nursery.start_soon(_failure_detector, state, config.heartbeat_timeout_seconds)
        log.info("SC listening: public %d, private %d", *ports)
        task_status.started(ports)
