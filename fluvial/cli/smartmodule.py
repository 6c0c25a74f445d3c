"""``fluvial smartmodule create|list|delete``: SmartModules stored on the cluster, which
consumers name (``fluvial consume T --smartmodule NAME``; docs/smartmodules.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fluvial.cli.common import OutputFormat, OutputOption, run_client, usage_error

__all__ = ["app", "parse_params", "smartmodule_chain", "transform_step", "transforms_chain"]

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


def transform_step(step: Any, where: str):
    """One step of Fluvio's transformation config (``uses``, ``with``, ``lookback``) as a
    ``SmartModule``: ``uses`` names a module on the cluster; ``with`` values that are not
    strings are passed as their JSON text (Fluvio's ``JsonString``); ``lookback`` is
    ``{last: N, age: 1h}``.

    >>> transform_step({"uses": "m", "with": {"a": "x", "b": {"c": 1}}}, "-").params
    {'a': 'x', 'b': '{"c":1}'}
    """
    import json

    from fluvial.cli.common import parse_duration
    from fluvial.client.smartmodule import SmartModule

    if not isinstance(step, dict) or not isinstance(step.get("uses"), str) or not step["uses"]:
        usage_error(f"{where}: a transform step needs 'uses: <smartmodule name>'")
    unknown = set(step) - {"uses", "with", "lookback"}
    if unknown:
        usage_error(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (uses, with, lookback)")
    with_ = step.get("with") or {}
    lookback = step.get("lookback")
    if not isinstance(with_, dict) or (lookback is not None and not isinstance(lookback, dict)):
        usage_error(f"{where}: 'with' and 'lookback' must be mappings")
    params = {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
              for k, v in with_.items()}
    last = age = None
    if lookback is not None:
        last = lookback.get("last", 0)
        if not isinstance(last, int) or last < 0:
            usage_error(f"{where}: lookback.last must be a whole number >= 0")
        if lookback.get("age") is not None:
            age = parse_duration(str(lookback["age"]))
    return SmartModule(name=step["uses"], params=params, lookback_last=last, lookback_age=age)


def transforms_chain(file: Path | None, lines: list[str] | None) -> list:
    """``--transforms FILE`` (YAML or JSON ``{transforms: [steps]}``) or ``--transforms-line
    JSON`` (one step each, repeatable), as Fluvio's CLI reads them."""
    import json

    from fluvial.cli.topic import YamlError, parse_yaml

    if file is not None and lines:
        usage_error("give --transforms or --transforms-line, not both")
    if file is not None:
        try:
            text = file.read_text()
        except OSError as e:
            usage_error(f"--transforms: {e.strerror or e}: {file}")
        try:
            config = json.loads(text) if file.suffix == ".json" else parse_yaml(text)
        except (ValueError, YamlError) as e:
            usage_error(f"--transforms: {file}: {e}")
        steps = config.get("transforms") if isinstance(config, dict) else None
        if not isinstance(steps, list) or not steps:
            usage_error(f"--transforms: {file} needs a non-empty 'transforms:' list")
        return [transform_step(s, f"--transforms {file}") for s in steps]
    chain = []
    for line in lines or ():
        try:
            step = json.loads(line)
        except ValueError as e:
            usage_error(f"--transforms-line: not JSON: {e}")
        chain.append(transform_step(step, "--transforms-line"))
    return chain


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
