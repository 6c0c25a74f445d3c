"""The ``fluvial`` command: the root app, its global options, and one sub-app per noun."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fluvial import __version__
from fluvial.cli.common import (
    CONNECT_TIMEOUT_SECONDS, CaCertFlag, ClientCertFlag, ClientKeyFlag, DomainFlag, GlobalOptions, TlsFlag,
    set_global_options, tls_policy_from_flags,
)

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def _root(
    ctx: typer.Context,
    cluster: Annotated[Optional[str], typer.Option(
        "-c", "--cluster", metavar="HOST:PORT",
        help="The SC to talk to, instead of the profile's (plain TCP unless TLS flags say otherwise).")] = None,
    profile: Annotated[Optional[str], typer.Option(
        "-P", "--profile", help="Use this profile instead of the current one.")] = None,
    tls: TlsFlag = None,
    domain: DomainFlag = None,
    ca_cert: CaCertFlag = None,
    client_cert: ClientCertFlag = None,
    client_key: ClientKeyFlag = None,
    connect_timeout: Annotated[float, typer.Option(
        "--connect-timeout", metavar="SECONDS", min=0.001,
        help="Give up (exit code 3) when the cluster does not answer within this.")] = CONNECT_TIMEOUT_SECONDS,
) -> None:
    """fluvial: a durable log cluster that speaks Fluvio's protocol.

    Example: fluvial cluster start && fluvial topic create greetings && echo hello | fluvial produce greetings
    """
    if cluster is not None and profile is not None:
        raise typer.BadParameter("give -c/--cluster or -P/--profile, not both")
    policy = tls_policy_from_flags(tls, domain, ca_cert, client_cert, client_key)
    set_global_options(ctx, GlobalOptions(cluster=cluster, profile=profile, tls=policy,
                                          connect_timeout=connect_timeout))


@app.command()
def version() -> None:
    """Print fluvial's version and the Fluvio platform version it speaks.

    Example: fluvial version
    """
    from fluvial.protocol import PLATFORM_VERSION

    typer.echo(f"fluvial {__version__} (fluvio platform {PLATFORM_VERSION})")


def _register() -> None:
    from fluvial.cli import (
        cluster, consume, consumer, partition, produce, profile_cmd, run, spu, topic,
    )
    from fluvial.cli import consumer_group

    app.add_typer(cluster.app, name="cluster")
    app.add_typer(run.app, name="run")
    produce.register(app)
    consume.register(app)
    app.add_typer(topic.app, name="topic")
    app.add_typer(partition.app, name="partition")
    app.add_typer(spu.app, name="spu")
    app.add_typer(consumer.app, name="consumer")
    app.add_typer(profile_cmd.app, name="profile")
    app.add_typer(consumer_group.app, name="consumer-group")
    from fluvial.cli import gateway, stream

    app.add_typer(stream.app, name="stream")
    gateway.register(app)
    from fluvial.cli import smartmodule
    app.add_typer(smartmodule.app, name="smartmodule")
    from fluvial.cli import processor
    app.add_typer(processor.app, name="processor")


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
