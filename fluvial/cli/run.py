"""``fluvial run sc|spu``: one server in the foreground (the code path ``cluster start`` uses).

Private (member-to-member) listeners in plaintext trust whoever connects, so they bind loopback
unless ``--private-host`` says otherwise, and the CLI warns when one is reachable from elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import trio
import typer

from fluvial import trace
from fluvial.access import is_loopback, private_bind_host, spu_member_name
from fluvial.malloc import keep_freed_memory

app = typer.Typer(no_args_is_help=True, help="Run one fluvial server in the foreground.")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _tls(tls_dir: Optional[Path], member: str, domain: str, policy_file: Optional[Path]):
    """(ClusterTls or None, Policy or None) from the --tls-dir / --policy flags."""
    if tls_dir is None:
        if policy_file is not None:
            raise typer.BadParameter("--policy needs --tls-dir: principals come from client certificates")
        return None, None
    from fluvial.auth import load_policy
    from fluvial.net.tls import ClusterTls

    policy = load_policy(policy_file or tls_dir / "policy.toml")
    return ClusterTls(tls_dir, member, domain, anonymous_clients=policy.allow_anonymous), policy


def exposed_plaintext_warning(member: str, private_host: str, tls: bool) -> str | None:
    """The warning for a plaintext private listener reachable from other machines, or None."""
    if tls or is_loopback(private_host):
        return None
    return (f"the {member}'s private port listens on {private_host} without TLS: anyone who "
            "can reach it can act as a cluster member (replicate, read and commit records). "
            "Use --tls-dir, or keep it on a private network.")


def _warn(message: str | None) -> None:
    if message:
        logging.getLogger("fluvial").warning("%s", message)


def _write_ready(path: Optional[Path], info: dict) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


async def _run_until_signal(serve, ready_file: Optional[Path], describe) -> None:
    """Run ``serve`` until SIGTERM/SIGINT, which are honoured at any time, even while starting.
    A server keeps the memory it frees for its next requests (``fluvial.malloc``)."""
    keep_freed_memory()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal():
                async for _ in signals:
                    logging.getLogger("fluvial").info("signal received: shutting down")
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            ports = await nursery.start(serve)
            _write_ready(ready_file, describe(ports))


@app.command("sc")
def run_sc(
    data_dir: Annotated[Path, typer.Option(help="Where the SC keeps its metadata.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    public_port: Annotated[int, typer.Option(help="Public port (clients); 0 picks one.")] = 9003,
    private_port: Annotated[int, typer.Option(help="Private port (SPUs); 0 picks one.")] = 9004,
    private_host: Annotated[Optional[str], typer.Option(help="Address the private port binds (default: "
                                                        "--host with TLS, 127.0.0.1 without).")] = None,
    heartbeat_timeout: Annotated[float, typer.Option(help="Seconds of SPU silence before it is failed.")] = 10.0,
    tls_dir: Annotated[Optional[Path], typer.Option(help="Certificates from `fluvial cluster certs`; enables TLS on every port.")] = None,
    domain: Annotated[str, typer.Option(help="The name clients dial the servers by (a SAN of the certificates).")] = "fluvial.local",
    policy: Annotated[Optional[Path], typer.Option(help="Authorization policy (default: policy.toml in --tls-dir).")] = None,
    ready_file: Annotated[Optional[Path], typer.Option(help="Write the bound ports here once up.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    metadata: Annotated[Optional[str], typer.Option(help="Where the metadata lives: etcd://h1:2379,h2:2379,... "
                                                    "runs this SC as one of several (docs/ha.md); "
                                                    "default: files in --data-dir.")] = None,
    etcd_prefix: Annotated[str, typer.Option(help="The etcd key prefix of this cluster.")] = "/fluvial",
    controller_lease: Annotated[float, typer.Option(help="Seconds of the controller's etcd lease "
                                                    "(failover takes about this long).")] = 3.0,
) -> None:
    """Run the streaming controller.

    Example: fluvial run sc --data-dir /var/lib/fluvial/sc --public-port 9003
    Several SCs: fluvial run sc --data-dir /var/lib/fluvial/sc --metadata etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379
    """
    from fluvial.sc.server import ScConfig, serve_sc

    _setup_logging(log_level)
    tls, pol = _tls(tls_dir, "sc", domain, policy)
    _warn(exposed_plaintext_warning("SC", private_bind_host(host, private_host, tls is not None),
                                    tls is not None))
    cfg = ScConfig(data_dir=data_dir, host=host, public_port=public_port, private_port=private_port,
                   private_host=private_host,
                   heartbeat_timeout_seconds=heartbeat_timeout, tls=tls, policy=pol)
    serve = serve_sc
    if metadata is not None:
        from fluvial.sc.etcd import parse_endpoints
        from fluvial.sc.ha import EtcdSettings, serve_sc_etcd

        if not metadata.startswith("etcd://"):
            raise typer.BadParameter(f"--metadata must be etcd://host:port,..., got {metadata!r}")
        try:
            parse_endpoints(metadata)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        if controller_lease < 1:
            raise typer.BadParameter("--controller-lease must be at least 1 second (etcd's lease unit)")
        settings = EtcdSettings(metadata, etcd_prefix, controller_lease)
        serve = lambda c, task_status: serve_sc_etcd(c, settings, task_status=task_status)  # noqa: E731
    trio.run(_run_until_signal, lambda task_status=trio.TASK_STATUS_IGNORED: serve(cfg, task_status=task_status),
             ready_file, lambda p: {"pid": os.getpid(), "public_port": p[0], "private_port": p[1]},
             instruments=trace.instruments())


@app.command("spu")
def run_spu(
    id: Annotated[int, typer.Option("--id", help="This SPU's id.")],
    data_dir: Annotated[Path, typer.Option(help="Where the SPU keeps its replicas.")],
    sc: Annotated[str, typer.Option(help="The SC's private endpoint, host:port; several SCs "
                                    "(docs/ha.md): host:port,host:port,...")] = "127.0.0.1:9004",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    public_port: Annotated[int, typer.Option(help="Public port (clients); 0 picks one.")] = 0,
    private_port: Annotated[int, typer.Option(help="Private port (replication); 0 picks one.")] = 0,
    private_host: Annotated[Optional[str], typer.Option(help="Address the private port binds (default: "
                                                        "--host with TLS, 127.0.0.1 without).")] = None,
    advertised_host: Annotated[Optional[str], typer.Option(help="Host clients should dial.")] = None,
    rack: Annotated[Optional[str], typer.Option(help="Rack label for placement.")] = None,
    flush: Annotated[str, typer.Option(help="sync (fsync before ack), interval or none.")] = "sync",
    replica_lag_time_max: Annotated[float, typer.Option(help="Seconds a follower may lag before it leaves the ISR.")] = 10.0,
    tls_dir: Annotated[Optional[Path], typer.Option(help="Certificates from `fluvial cluster certs`; enables TLS on every port.")] = None,
    domain: Annotated[str, typer.Option(help="The name clients dial the servers by (a SAN of the certificates).")] = "fluvial.local",
    policy: Annotated[Optional[Path], typer.Option(help="Authorization policy (default: policy.toml in --tls-dir).")] = None,
    ready_file: Annotated[Optional[Path], typer.Option(help="Write the bound ports here once up.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run one streaming processing unit.

    Example: fluvial run spu --id 5001 --data-dir /var/lib/fluvial/spu-5001 --sc 10.0.0.1:9004
    """
    from fluvial.spu.server import SpuConfig, serve_spu

    _setup_logging(log_level)
    scs = []
    for one in sc.split(","):
        sc_host, _, sc_port = one.strip().rpartition(":")
        if not sc_host or not sc_port.isdigit():
            raise typer.BadParameter(f"--sc must be host:port[,host:port...], got {sc!r}")
        scs.append((sc_host, int(sc_port)))
    (sc_host, sc_port), sc_more = scs[0], tuple(scs[1:])
    tls, pol = _tls(tls_dir, spu_member_name(id), domain, policy)
    _warn(exposed_plaintext_warning(f"SPU {id}", private_bind_host(host, private_host, tls is not None),
                                    tls is not None))
    cfg = SpuConfig(spu_id=id, tls=tls, policy=pol, data_dir=data_dir, sc_host=sc_host, sc_port=sc_port, sc_more=sc_more, host=host,
                    public_port=public_port, private_port=private_port, private_host=private_host,
                    advertised_host=advertised_host, rack=rack, flush=flush,
                    replica_lag_time_max_seconds=replica_lag_time_max)
    trio.run(_run_until_signal, lambda task_status=trio.TASK_STATUS_IGNORED: serve_spu(cfg, task_status=task_status),
             ready_file, lambda p: {"pid": os.getpid(), "public_port": p[0], "private_port": p[1]},
             instruments=trace.instruments())


@app.command("processor")
def run_processor_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The processor (`fluvial processor create`).")],
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run one processor in the foreground, until Ctrl-C or until it is deleted (any host; it
    resumes where the last run committed, replaying a window in doubt: docs/processors.md).

    Example: fluvial run processor avg
    """
    from fluvial.cli.common import run_client
    from fluvial.processor.runtime import run_processor

    _setup_logging(log_level)
    run_client(ctx, lambda fl: run_processor(fl, name), stop_on_interrupt=True)


@app.command("processors")
def run_processors_cmd(
    ctx: typer.Context,
    ready_file: Annotated[Optional[Path], typer.Option(help="Write {pid} here once up.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Supervise every processor of the cluster: one `fluvial run processor NAME` each,
    restarted with backoff when it crashes, stopped when its processor is deleted (what
    `fluvial cluster start --processors` runs). The runtimes get this command's global flags
    (-c or -P, the TLS flags, --connect-timeout).

    Example: fluvial run processors (with -P PROFILE or -c HOST:PORT before `run`)
    """
    from fluvial.cli.common import global_options, open_client
    from fluvial.errors import FluvialError
    from fluvial.processor.supervisor import spawn_runtime, supervise

    _setup_logging(log_level)
    options = global_options(ctx)
    prefix = [sys.executable, "-m", "fluvial.cli.main", *options.argv()]

    async def serve(task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with open_client(options) as fl:
            last: list[str] = []

            async def names() -> list[str]:
                nonlocal last
                try:
                    last = [m.name for m in await fl.admin.list_processors()]
                except FluvialError as e:  # the cluster is away: keep what runs
                    logging.getLogger("fluvial.processor").warning("cannot list processors: %s", e)
                return last

            task_status.started((0, 0))
            await supervise(names, spawn_runtime(prefix))

    trio.run(_run_until_signal, serve, ready_file,
             lambda p: {"pid": os.getpid(), "public_port": 0, "private_port": 0})
