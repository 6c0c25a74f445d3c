"""Formatting without a cluster: tables, JSON and YAML, the consume record formats, produce's
line splitting, error lines, and the rule that only ``fluvial/cli/output.py`` imports rich."""

from __future__ import annotations

import ast
import doctest
import json
import pathlib
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluvial
from fluvial.cli import common, consume, output, produce, topic
from fluvial.cli.consume import ConsumeOutput, RecordFormatter, hex_dump, is_binary
from fluvial.cli.output import print_error, print_rows, to_yaml
from fluvial.cli.produce import split_lines
from fluvial.cli.topic import parse_yaml
from fluvial.client.types import Record

PACKAGE = pathlib.Path(fluvial.__file__).parent


def test_only_the_output_module_imports_rich():
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "rich" or n.startswith("rich.") for n in names):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert sorted(set(importers)) == ["cli/output.py"]


@pytest.mark.parametrize("module", [common, consume, output, produce, topic], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


# -------------------------------------------------------------------------------- YAML, JSON

_scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
            | st.floats(allow_nan=False, allow_infinity=False))
_keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)
_data = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_keys, inner, max_size=4), max_leaves=15)


@given(st.dictionaries(_keys, _data, max_size=5))
def test_yaml_output_reads_back_as_the_same_data(data):
    assert parse_yaml(to_yaml(data)) == data


def test_yaml_quotes_what_would_change_meaning():
    text = to_yaml({"a": "yes", "b": "1", "c": "x: y", "d": "", "e": None, "f": [], "g": {},
                    "h": "plain-text", "i": "127.0.0.1:9003", "j": "# no"})
    assert text == ('a: "yes"\nb: "1"\nc: "x: y"\nd: ""\ne: null\nf: []\ng: {}\n'
                    'h: plain-text\ni: "127.0.0.1:9003"\nj: "# no"\n')


def test_lists_of_records_print_as_table_json_or_yaml(capsys):
    rows = [{"name": "a", "partitions": 1, "tags": ["x", "y"], "ok": True},
            {"name": "bb", "partitions": 12, "tags": [], "ok": False}]
    print_rows(rows, ["name", "partitions", "tags", "ok"], "table")
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "PARTITIONS", "TAGS", "OK"]
    assert table[1].split() == ["a", "1", "x,", "y", "yes"]
    assert table[2].split() == ["bb", "12", "no"]
    print_rows(rows, ["name"], "json")
    assert json.loads(capsys.readouterr().out) == rows
    print_rows(rows, ["name"], "yaml")
    assert parse_yaml(capsys.readouterr().out) == rows
    print_rows([], ["name"], "table", empty="no topics")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "no topics\n")
    print_rows([], ["name"], "json")
    assert json.loads(capsys.readouterr().out) == []


def test_a_long_table_is_not_wrapped_when_piped(capsys):
    long = "x" * 300
    print_rows([{"name": long, "reason": long}], ["name", "reason"], "table")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split() == [long, long]


def test_errors_are_one_line_on_stderr_with_a_hint(capsys):
    print_error("topic '[x]' not found " + "y" * 200, "run `fluvial topic list`")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["error: topic '[x]' not found " + "y" * 200,
                                         "hint: run `fluvial topic list`"]


# --------------------------------------------------------------------------- consume formats


def rec(value: bytes, key: bytes | None = None, offset: int = 0, partition: int = 0,
        timestamp: int = -1) -> Record:
    return Record((partition, offset, key, value, timestamp))


def test_text_records_print_one_per_line_as_they_are():
    records = [rec(b"hello"), rec(b""), rec("h\u00e9".encode())]
    assert RecordFormatter().format(records) == "hello\n\nh\u00e9\n".encode()
    assert RecordFormatter(ConsumeOutput.text).format(records) == "hello\n\nh\u00e9\n".encode()


def test_dynamic_shows_binary_values_as_a_hex_dump():
    out = RecordFormatter().format([rec(b"text"), rec(b"\x00\x01bin"), rec(b"\xff")])
    assert out == b"text\n" + hex_dump(b"\x00\x01bin") + hex_dump(b"\xff")
    assert RecordFormatter(ConsumeOutput.text).format([rec(b"\x00\x01")]) == b"binary: (2 bytes)\n"


def test_hex_dump_lays_out_16_bytes_a_line():
    dump = hex_dump(bytes(range(0x41, 0x41 + 20))).decode().splitlines()
    assert dump == [
        "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|",
        "00000010  51 52 53 54                                       |QRST|",
    ]
    assert RecordFormatter(ConsumeOutput.binary).format([rec(b"")]) == b"00000000  (empty)\n"


def test_is_binary_means_nul_or_not_utf8():
    assert not is_binary("line \u2603\ttab".encode())
    assert is_binary(b"a\x00b") and is_binary(b"\xc3")


def test_raw_adds_nothing():
    assert RecordFormatter(ConsumeOutput.raw).format([rec(b"\x00a"), rec(b"b\n")]) == b"\x00ab\n"


def test_json_prints_each_value_compact_and_warns_about_the_rest():
    warnings = []
    formatter = RecordFormatter(ConsumeOutput.json, warn=warnings.append)
    out = formatter.format([rec(b'{"a": [1, 2]}', offset=3), rec(b"not json", offset=4), rec(b"7")])
    assert out == b'{"a":[1,2]}\n7\n'
    assert len(warnings) == 1 and "offset 4" in warnings[0]


def test_keys_are_shown_in_brackets():
    out = RecordFormatter(show_key=True).format([rec(b"v1", b"k1"), rec(b"v2")])
    assert out == b"[k1] v1\n[null] v2\n"


def test_templates_fill_in_every_field():
    ts = int(datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc).timestamp() * 1000)
    formatter = RecordFormatter(template="{{partition}}/{{ offset }} {{key}}={{value}} @{{time}}")
    out = formatter.format([rec(b"v", b"k", offset=42, partition=1, timestamp=ts), rec(b"\xff")])
    assert out.decode() == "1/42 k=v @2024-05-06T07:08:09.123Z\n0/0 null=\ufffd @NA\n"


# ------------------------------------------------------------------------- produce's lines


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       st.booleans(), st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=10))
def test_split_lines_gives_the_lines_whatever_the_chunking(lines, final_newline, cuts):
    text = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    pending: list[bytes] = []
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(text):
        size = cuts[i % len(cuts)]
        got += split_lines(pending, text[pos:pos + size])
        pos += size
        i += 1
    if pending:
        got.append(b"".join(pending))
    # a line ending is "\n" or "\r\n"; the last line may have none (and then is kept as it is,
    # unless it is empty: then there is no last line)
    terminated = lines if final_newline else lines[:-1]
    expected = [line[:-1] if line.endswith(b"\r") else line for line in terminated]
    if lines and not final_newline and lines[-1]:
        expected.append(lines[-1])
    assert got == expected
