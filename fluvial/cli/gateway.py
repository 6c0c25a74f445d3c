"""``fluvial gateway``: serve iii's streams protocol over WebSocket (and HTTP) on the cluster."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import trio
import typer

from fluvial.cli.common import global_options, handle_errors, open_client, usage_error

__all__ = ["gateway", "register"]


def gateway(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 31112,
    auth_function: Annotated[Optional[str], typer.Option(
        metavar="PKG.MODULE:FN", help="Called with {headers, path, query_params, addr} when a socket "
        "opens; returns {context: ...} or refuses it (HTTP 401).")] = None,
    on_join: Annotated[Optional[str], typer.Option(
        metavar="PKG.MODULE:FN", help="Called on every join; {unauthorized: true} refuses it.")] = None,
    on_leave: Annotated[Optional[str], typer.Option(metavar="PKG.MODULE:FN",
                                                    help="Called on every leave.")] = None,
    hook_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds a hook may take.")] = 5.0,
    max_connections: Annotated[int, typer.Option(min=1, help="Sockets at once.")] = 10_000,
    max_frame_bytes: Annotated[int, typer.Option(min=64, help="Largest client frame.")] = 64 * 1024,
    max_subscriptions: Annotated[int, typer.Option(min=1, help="Subscriptions per socket.")] = 1000,
    queue_size: Annotated[int, typer.Option(min=1, help="Frames queued per socket before a slow "
                                            "subscriber is disconnected.")] = 10_000,
    tls_dir: Annotated[Optional[Path], typer.Option(
        help="Serve TLS (wss://) with server.crt and server.key from this directory (default: "
        "the cluster's certificates, beside the profile's CA, when the profile uses TLS).")] = None,
    plaintext: Annotated[bool, typer.Option("--plaintext", help="Serve ws:// even when the "
                                            "profile uses TLS.")] = False,
    ready_file: Annotated[Optional[Path], typer.Option(help="Write the bound port here once up.")] = None,
) -> None:
    """Serve real-time stream subscriptions (iii's streams protocol) over WebSocket at `/`, HTTP
    stream operations and a live page at `/ui`.

    Example: fluvial gateway --port 31112 --auth-function myapp.auth:check
    """
    from fluvial.gateway.hooks import HookError, load_function
    from fluvial.gateway.server import GatewayConfig, serve_gateway

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        hooks = {name: load_function(spec) if spec else None
                 for name, spec in [("auth_function", auth_function), ("on_join", on_join),
                                    ("on_leave", on_leave)]}
    except HookError as e:
        usage_error(str(e))
    options = global_options(ctx)
    ssl_context = None
    if tls_dir is None and not plaintext:
        tls_dir = cluster_certificates(options.connect_args())
    if tls_dir is not None and not plaintext:
        from fluvial.net.tls import server_ssl_context

        try:
            ssl_context = server_ssl_context(tls_dir / "server.crt", tls_dir / "server.key")
        except (OSError, ValueError) as e:
            usage_error(f"--tls-dir {tls_dir}: {e}")
    config = GatewayConfig(host=host, port=port, hook_timeout=hook_timeout,
                           max_connections=max_connections, max_frame_bytes=max_frame_bytes,
                           max_subscriptions=max_subscriptions, queue_size=queue_size,
                           ssl_context=ssl_context, **hooks)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with open_client(options) as fl, trio.open_nursery() as nursery:
                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                gw: Any = await nursery.start(serve_gateway, fl, config)
                scheme = "wss" if ssl_context else "ws"
                logging.getLogger("fluvial.gateway").info(
                    "gateway at %s://%s:%d/ (live page: /ui)", scheme, host, gw.port)
                if ready_file is not None:
                    tmp = ready_file.with_name(ready_file.name + ".tmp")
                    tmp.write_text(json.dumps({"pid": os.getpid(), "public_port": gw.port,
                                               "private_port": 0}))
                    os.replace(tmp, ready_file)

    with handle_errors():
        trio.run(main)


def cluster_certificates(connect_args: dict) -> Path | None:
    """The directory of the cluster's server certificate when the profile uses mutual TLS with
    certificate files and ``server.crt``/``server.key`` sit beside its CA (as
    ``fluvial cluster start`` mints them); else None."""
    from fluvial.client.profile import TlsVerified, resolve_endpoint
    from fluvial.errors import FluvialError

    try:
        policy = resolve_endpoint(**connect_args).tls
    except FluvialError:
        return None
    if not isinstance(policy, TlsVerified) or policy.source != "files":
        return None
    d = Path(policy.ca_cert).parent
    return d if (d / "server.crt").exists() and (d / "server.key").exists() else None


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
