"""``fluvial processor create|list|describe|delete|call``: processors stored on the SC, which
``fluvial run processor NAME`` runs (docs/processors.md)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from fluvial.cli.common import OutputFormat, OutputOption, parse_duration, run_client, usage_error

__all__ = ["app", "processor_record"]

app = typer.Typer(no_args_is_help=True, help="Create, list, describe and delete processors.")


def processor_record(m: Any) -> dict[str, Any]:
    """A processor as the CLI shows it (JSON/YAML; the table picks columns)."""
    spec, st = m.spec, m.status
    window = f"{spec.window_count} records" if spec.window_count else f"{spec.window_ms / 1000:g}s"
    return {"name": m.name, "function": spec.function or spec.invoker, "inputs": list(spec.inputs),
            "outputs": list(spec.outputs), "window": window, "path": spec.path or None,
            "invoker": spec.invoker or None, "dead_letter": spec.dead_letter or None,
            "max_failures": spec.max_failures, "state": st.state, "windows_done": st.windows_done,
            "last_error": st.last_error or None, "pid": st.pid or None, "host": st.host or None,
            "lag": dict(st.lag)}


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The processor's name.")],
    function: Annotated[Optional[str], typer.Option(
        "--function", metavar="MODULE:NAME", help="The Python function, e.g. mypkg.avg:average.")] = None,
    inputs: Annotated[Optional[list[str]], typer.Option(
        "--input", metavar="TOPIC", help="An input topic (repeatable).")] = None,
    outputs: Annotated[Optional[list[str]], typer.Option(
        "--output", metavar="TOPIC", help="An output topic (repeatable).")] = None,
    window: Annotated[Optional[str], typer.Option(
        "--window", metavar="DURATION", help="Tumbling windows of this length (default 60s).")] = None,
    window_count: Annotated[Optional[int], typer.Option(
        "--window-count", min=1, metavar="N", help="Tumbling windows of N input records.")] = None,
    path: Annotated[Optional[str], typer.Option(
        "--path", metavar="DIR", help="A directory added to the runtime's import path.")] = None,
    invoker: Annotated[Optional[str], typer.Option(
        "--invoker", metavar="grpc://HOST:PORT",
        help="Run the function behind this riff invoker (gRPC); --function is then only a label.")] = None,
    dead_letter: Annotated[Optional[str], typer.Option(
        "--dead-letter", metavar="TOPIC",
        help="After --max-failures, send the window's input here and go on (default: Failed).")] = None,
    max_failures: Annotated[int, typer.Option(
        "--max-failures", min=1, help="Attempts per window before Failed (or the dead letter).")] = 5,
) -> None:
    """Create a processor.

    Example: fluvial processor create avg --function avg:average --input nums --output avgs --window 10s --path ./fns
    """
    from fluvial.processor.spec import processor_spec

    if not function and not invoker:
        usage_error("give --function MODULE:NAME (or --invoker grpc://HOST:PORT)")
    if invoker:
        from fluvial.processor.riff import MISSING_GRPC, grpc_available

        if not grpc_available():
            usage_error(MISSING_GRPC)
    seconds = None
    if window is not None:
        seconds = parse_duration(window)
        if seconds <= 0:
            usage_error("--window must be longer than 0s")
    try:
        spec = processor_spec(function or "", inputs or [], outputs or [], window=seconds,
                              window_count=window_count, path=path or "", invoker=invoker or "",
                              dead_letter=dead_letter or "", max_failures=max_failures)
    except ValueError as e:
        usage_error(str(e))

    async def body(fl: Any) -> None:
        await fl.admin.create_processor(name, spec)

    run_client(ctx, body)
    typer.echo(f"processor '{name}' created")


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the processors.

    Example: fluvial processor list -O json
    """
    from fluvial.cli.output import print_rows

    async def body(fl: Any) -> list:
        return await fl.admin.list_processors()

    rows = [processor_record(m) for m in run_client(ctx, body)]
    if output is OutputFormat.table:
        rows = [{**r, "inputs": ",".join(r["inputs"]), "outputs": ",".join(r["outputs"])} for r in rows]
    print_rows(rows, ["name", "function", "inputs", "outputs", "window", "state", "windows_done"],
               output.value, headers=["PROCESSOR", "FUNCTION", "INPUTS", "OUTPUTS", "WINDOW", "STATE",
                                      "WINDOWS"], empty="no processors")


@app.command()
def describe(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The processor.")],
             output: OutputOption = OutputFormat.table) -> None:
    """Show a processor: its spec and status (state, windows done, last error, PID, lag).

    Example: fluvial processor describe avg -O json
    """
    from fluvial.cli.output import print_data

    async def body(fl: Any) -> Any:
        return await fl.admin.describe_processor(name)

    record = processor_record(run_client(ctx, body))
    if output is OutputFormat.table:
        record = {k: (", ".join(map(str, v)) if isinstance(v, list) else
                      ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v)
                  for k, v in record.items()}
    print_data(record, output.value)


@app.command()
def delete(ctx: typer.Context,
           names: Annotated[list[str], typer.Argument(help="The processor(s).", metavar="NAME...")]) -> None:
    """Delete processors (a runtime running one stops at its next status report).

    Example: fluvial processor delete avg
    """

    async def body(fl: Any) -> None:
        for n in names:
            await fl.admin.delete_processor(n)
            typer.echo(f"processor '{n}' deleted")

    run_client(ctx, body)


@app.command()
def call(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The processor.")],
         input_index: Annotated[int, typer.Option(
             "--input", metavar="INDEX", help="The function's input the lines are for.")] = 0,
         timeout: Annotated[str, typer.Option(
             help="How long to wait for the reply once the input has ended.")] = "60s") -> None:
    """Call the processor's function once: every line of stdin is a record of the call; its
    outputs are printed, one per line, until the reply's end (docs/processors.md). The input is
    read to its end before the call starts.

    Example: printf '3\\n4\\n8\\n' | fluvial processor call avg
    """
    import sys

    seconds = parse_duration(timeout)
    if seconds <= 0:
        usage_error("--timeout must be longer than 0s")
    lines = sys.stdin.buffer.read().splitlines()

    async def body(fl: Any) -> None:
        from fluvial.errors import FluvialError

        out = sys.stdout.buffer
        async with fl.call(name, timeout=seconds) as (sink, source):
            for line in lines:
                try:
                    await sink.send(line, input=input_index)
                except ValueError as e:
                    raise FluvialError(detail=str(e)) from None
            await sink.aclose()
            async for rec in source:
                out.write(rec.value + b"\n")
                out.flush()

    run_client(ctx, body)
