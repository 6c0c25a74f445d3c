"""The ``fluvial`` command."""

from __future__ import annotations

import typer

from fluvial import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="fluvial: a durable log cluster.")


@app.callback()
def _root() -> None:
    """fluvial: a durable log cluster that speaks Fluvio's protocol."""


@app.command()
def version() -> None:
    """Print fluvial's version and the Fluvio platform version it speaks."""
    from fluvial.protocol import PLATFORM_VERSION

    typer.echo(f"fluvial {__version__} (fluvio platform {PLATFORM_VERSION})")


def _register() -> None:
    from fluvial.cli import cluster, run

    app.add_typer(cluster.app, name="cluster")
    app.add_typer(run.app, name="run")


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
