"""The only module that imports rich: tables, JSON/YAML output, progress bars and error lines.

Every other CLI module prints through here, so the look of the output (and the choice of library)
is decided in one place. Rules:

* Data goes to stdout, everything else (errors, hints, progress, summaries) to stderr, so that
  ``fluvial topic list -O json | jq`` and ``fluvial consume t -B -d > file`` stay clean.
* When stdout is not a terminal, tables are not squeezed to 80 columns and nothing is coloured.
* ``-O json`` and ``-O yaml`` write plain text (no highlighting), whatever the terminal.
"""

from __future__ import annotations

import json
import math
import re
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

__all__ = [
    "console", "err_console", "print_data", "print_error", "print_json", "print_note",
    "print_rows", "print_table", "print_warning", "progress", "stderr_is_terminal",
    "stdout_is_terminal", "to_yaml",
]

# Kept for callers that print rich renderables directly (they write to the streams in use at
# print time, so CliRunner's captured streams work).
console = Console()
err_console = Console(stderr=True)

_WIDE = 100_000  # the width used when stdout is not a terminal: never wrap or truncate


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def stdout_is_terminal() -> bool:
    return _is_tty(sys.stdout)


def stderr_is_terminal() -> bool:
    return _is_tty(sys.stderr)


def _out() -> Console:
    return Console(file=sys.stdout, width=None if stdout_is_terminal() else _WIDE)


def _err() -> Console:
    return Console(file=sys.stderr, width=None if stderr_is_terminal() else _WIDE)


# ----------------------------------------------------------------------------- tables, json, yaml


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value)


def print_table(columns: Sequence[str], rows: Sequence[dict[str, Any]],
                headers: Sequence[str] | None = None) -> None:
    """A borderless table of ``rows`` (dicts), one column per key in ``columns``.

    Args:
        headers: the column titles (default: the keys, upper-cased with spaces).
    """
    titles = headers if headers is not None else [c.replace("_", " ").upper() for c in columns]
    table = Table(*titles, box=None, header_style="bold", pad_edge=False)
    for r in rows:
        table.add_row(*(escape(_cell(r.get(c))) for c in columns))
    _out().print(table, soft_wrap=True)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (plain text, one document)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_SPECIAL = {"", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False",
                 "FALSE", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off",
                 "OFF", "y", "Y", "n", "N"}


_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _needs_escape(text: str) -> bool:
    return "\x85" in text or "\u2028" in text or "\u2029" in text


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text not in _YAML_SPECIAL:
        return text
    # a JSON string is a valid YAML double-quoted scalar; the line separators that JSON leaves
    # alone are escaped too, so that every value stays on its line
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted.translate(_LINE_BREAKS) if _needs_escape(quoted) else quoted


def _yaml_key(key: Any) -> str:
    return _yaml_scalar(key if isinstance(key, str) else str(key))


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list, tuple)) and v:
                lines.append(f"{pad}{_yaml_key(k)}:")
                lines += _yaml_lines(v, indent + 1 if isinstance(v, dict) else indent)
            else:
                lines.append(f"{pad}{_yaml_key(k)}: {_yaml_inline(v)}")
        return lines
    if isinstance(value, (list, tuple)):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            if isinstance(item, (dict, list, tuple)) and item:
                inner = _yaml_lines(item, indent + 1)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {_yaml_inline(item)}")
        return lines
    return [pad + _yaml_scalar(value)]


def _yaml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return _yaml_scalar(value)


def to_yaml(data: Any) -> str:
    """A block-style YAML document for plain data (dicts, lists, str, int, float, bool, None).

    Strings that YAML would read as something else (``"yes"``, ``"1"``, ``"a: b"``) are quoted, so
    a YAML parser gives back exactly ``data``.

    >>> print(to_yaml({"name": "t", "partitions": 2, "assigned": {0: [5001]}}), end="")
    name: t
    partitions: 2
    assigned:
      "0":
      - 5001
    """
    return "\n".join(_yaml_lines(data, 0)) + "\n"


def print_data(data: Any, output: str, *, columns: Sequence[str] | None = None,
               headers: Sequence[str] | None = None) -> None:
    """Print ``data`` as ``output`` ("table", "json" or "yaml").

    For "table", ``data`` is a list of row dicts (shown with ``columns``) or a single dict (shown
    as FIELD/VALUE pairs).
    """
    if output == "json":
        print_json(data)
    elif output == "yaml":
        sys.stdout.write(to_yaml(data))
        sys.stdout.flush()
    elif isinstance(data, dict):
        print_table(["field", "value"], [{"field": k, "value": v} for k, v in data.items()])
    else:
        print_table(columns or (list(data[0]) if data else []), data, headers)


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], output: str,
               headers: Sequence[str] | None = None, empty: str | None = None) -> None:
    """A list command's output: a table of ``columns``, or every field as JSON/YAML.

    Args:
        empty: a note printed (on stderr) instead of an empty table.
    """
    if output == "table" and not rows and empty:
        print_note(empty)
        return
    print_data(list(rows), output, columns=columns, headers=headers)


# -------------------------------------------------------------------------------- stderr lines


def print_error(message: str, hint: str | None = None) -> None:
    """``error: message`` in red on one line of stderr, and ``hint: ...`` below it if given."""
    con = _err()
    con.print(f"[bold red]error:[/bold red] [red]{escape(message)}[/red]", highlight=False,
              soft_wrap=True)
    if hint:
        con.print(f"[dim]hint: {escape(hint)}[/dim]", highlight=False, soft_wrap=True)


def print_warning(message: str) -> None:
    _err().print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def print_note(message: str) -> None:
    """A status line for humans, on stderr."""
    _err().print(escape(message), highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------ progress


class _NoProgress:
    def advance(self, amount: int) -> None:
        pass


class _Progress:
    def __init__(self, progress: Progress, task: Any):
        self._progress = progress
        self._task = task

    def advance(self, amount: int) -> None:
        self._progress.advance(self._task, amount)


@contextmanager
def progress(total_bytes: int, description: str) -> Iterator[_Progress | _NoProgress]:
    """A progress bar on stderr for reading ``total_bytes``: ``with progress(n, "file") as bar:
    bar.advance(k)``. Shown only when stderr is a terminal (and removed when done)."""
    if not stderr_is_terminal():
        yield _NoProgress()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_err(), transient=True) as bar:
        yield _Progress(bar, bar.add_task(escape(description), total=total_bytes))
