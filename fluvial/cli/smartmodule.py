"""``fluvial smartmodule create|list|delete``: SmartModules stored on the cluster, which
consumers name (``fluvial consume T --smartmodule NAME``; docs/smartmodules.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fluvial.cli.common import OutputFormat, OutputOption, run_client, usage_error

__all__ = ["app", "parse_params", "smartmodule_chain"]

app = typer.Typer(no_args_is_help=True, help="Create, list and delete SmartModules.")


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``-e key=value`` options as a dict (a later key wins).

    >>> parse_params(["a=1", "b=x=y"])
    {'a': '1', 'b': 'x=y'}
    """
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            usage_error(f"-e/--params takes key=value, not {item!r}")
        out[key] = value
    return out


def smartmodule_chain(name: str | None, path: Path | None, params: list[str] | None,
                      aggregate_initial: str | None) -> list:
    """The consumer's ``smartmodules=`` for ``consume``'s options; [] when none is given."""
    from fluvial.client.smartmodule import SmartModule

    if name is not None and path is not None:
        usage_error("give --smartmodule or --smartmodule-path, not both")
    if name is None and path is None:
        if params or aggregate_initial is not None:
            usage_error("-e/--params and --aggregate-initial need --smartmodule or --smartmodule-path")
        return []
    if path is not None and not path.is_file():
        usage_error(f"--smartmodule-path: no such file: {path}")
    return [SmartModule(name=name, path=path, params=parse_params(params),
                        aggregate_initial=aggregate_initial)]


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The name consumers will use.")],
    wasm_file: Annotated[Path, typer.Option("--wasm-file", metavar="FILE",
                                            help="The module: a .wasm file (raw or gzipped).")],
) -> None:
    """Store a SmartModule on the cluster.

    Example: fluvial smartmodule create my-filter --wasm-file target/wasm32-wasip1/release/my_filter.wasm
    """
    from fluvial.smartmodule.abi import ModuleError, wasm_bytes

    try:
        data = wasm_file.read_bytes()
    except OSError as e:
        usage_error(f"--wasm-file: {e.strerror or e}: {wasm_file}")
    try:
        wasm_bytes(data)
    except ModuleError as e:
        usage_error(f"--wasm-file: {wasm_file} is not a SmartModule: {e}")

    async def body(fl: Any) -> None:
        await fl.admin.create_smartmodule(name, data)

    run_client(ctx, body)
    typer.echo(f"smartmodule '{name}' created")


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the SmartModules stored on the cluster.

    Example: fluvial smartmodule list
    """
    from fluvial.cli.common import format_size
    from fluvial.cli.output import print_rows

    async def body(fl: Any) -> list:
        return await fl.admin.list_smartmodules()

    infos = run_client(ctx, body)
    if output is OutputFormat.table:
        rows = [{"name": i.name, "size": format_size(i.size)} for i in infos]
    else:
        rows = [{"name": i.name, "size": i.size} for i in infos]
    print_rows(rows, ["name", "size"], output.value, headers=["SMARTMODULE", "SIZE"],
               empty="no smartmodules")


@app.command()
def delete(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="The SmartModule(s) to delete.", metavar="NAME...")],
) -> None:
    """Delete SmartModules (streams already running one keep it).

    Example: fluvial smartmodule delete my-filter
    """

    async def body(fl: Any) -> None:
        for name in names:
            await fl.admin.delete_smartmodule(name)
            typer.echo(f"smartmodule '{name}' deleted")

    run_client(ctx, body)
