"""The only module that imports rich: tables, JSON/YAML output and error lines."""

from __future__ import annotations

import json
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    table = Table(*columns, box=None, header_style="bold")
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    console.print(table)


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data))


def print_error(message: str, hint: str | None = None) -> None:
    err_console.print(f"[red]error:[/red] {message}" + (f"\n[dim]hint: {hint}[/dim]" if hint else ""),
                      highlight=False)
