"""Parsing without a cluster: durations, sizes, TLS flags, the topic config file, usage errors
(exit code 2), an unreachable cluster (exit code 3), and the help of every command."""

from __future__ import annotations

import re
import socket
import textwrap

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.main import get_command
from typer.testing import CliRunner

from fluvial.cli.common import (
    EXIT_UNREACHABLE, EXIT_USAGE, format_duration, format_size, parse_duration, parse_size,
    tls_policy_from_flags,
)
from fluvial.cli.main import app
from fluvial.cli.topic import YamlError, load_topic_config, parse_yaml
from fluvial.client.profile import TlsAnonymous, TlsDisabled, TlsVerified

runner = CliRunner()
ENV = {"NO_COLOR": "1", "COLUMNS": "200", "FLUVIAL_CONFIG": None}


def invoke(*args: str, **kw):
    return runner.invoke(app, list(args), env=ENV, **kw)


# ----------------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize("text, seconds", [
    ("7d", 604800), ("1h", 3600), ("90", 90), ("1h30m", 5400), ("1h 30m", 5400), ("2 days", 172800),
    ("150ms", 0.15), ("1w", 604800), ("30 min", 1800), ("12hours", 43200), ("1.5h", 5400),
    ("1M", 2_630_016), ("1m", 60), ("1y", 31_557_600), ("10s", 10), ("250us", 0.00025),
])
def test_parse_duration_reads_humantime_forms(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "d", "7x", "1h 30", "-1s", "1..2s", "7 d d", "forever"])
def test_parse_duration_refuses_the_rest(text):
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text, size", [
    ("1GiB", 1 << 30), ("512MB", 512_000_000), ("1.5 GB", 1_500_000_000), ("64k", 64_000),
    ("16KiB", 16384), ("1000", 1000), ("10 b", 10), ("1tib", 1 << 40), ("2Mi", 2 << 20),
])
def test_parse_size_reads_bytesize_forms(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "1XB", "-5MB", "1 G B", "one"])
def test_parse_size_refuses_the_rest(text):
    with pytest.raises(typer.BadParameter):
        parse_size(text)


def test_format_size_is_short_and_exact_where_it_can_be():
    assert [format_size(n) for n in (0, 12, 1024, 1536, 1 << 30, None)] == [
        "0 B", "12 B", "1 KiB", "1.5 KiB", "1 GiB", ""]


# ------------------------------------------------------------------------------------- TLS


def test_tls_flags_choose_a_policy(tmp_path):
    files = [tmp_path / n for n in ("ca.crt", "me.crt", "me.key")]
    assert tls_policy_from_flags(None, None, None, None, None) is None
    assert isinstance(tls_policy_from_flags(False, None, None, None, None), TlsDisabled)
    assert isinstance(tls_policy_from_flags(True, None, None, None, None), TlsAnonymous)
    verified = tls_policy_from_flags(None, "fluvial.local", *files)
    assert verified == TlsVerified("fluvial.local", str(files[2]), str(files[1]), str(files[0]))


def test_partial_tls_flags_are_a_usage_error(tmp_path):
    result = invoke("--domain", "x", "--ca-cert", str(tmp_path / "ca.crt"), "topic", "list")
    assert result.exit_code == EXIT_USAGE
    assert "missing --client-cert, --client-key" in result.output
    result = invoke("--no-tls", "--domain", "x", "topic", "list")
    assert result.exit_code == EXIT_USAGE
    assert "--no-tls cannot be combined with --domain" in result.output


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args, says", [
    (["consume", "t", "-B", "-H", "3"], "-B and -H"),
    (["consume", "t", "-T", "1", "--start", "2"], "-T and --start"),
    (["consume", "t", "-p", "0", "-A"], "not both"),
    (["consume", "t", "-F", "{{value}}", "-O", "json"], "-F/--format or -O/--output"),
    (["consume", "t", "--start", "5", "--end", "4"], "--end 4 is before --start 5"),
    (["consume", "t", "-F", "{{nope}}"], "unknown placeholder"),
    (["consume", "t", "-O", "table"], "table"),
    (["consume", "t", "-b", "lots"], "size"),
    (["consume", "t", "--isolation", "dirty"], "--isolation must be one of"),
    (["produce", "t", "--key", "k", "--key-separator", ":"], "--key or --key-separator"),
    (["produce", "t", "--raw", "--key-separator", ":"], "--raw"),
    (["produce", "t", "--linger", "soon"], "duration"),
    (["produce", "t", "--delivery-semantic", "maybe"], "--delivery-semantic must be one of"),
    (["produce", "t", "-f", "/no/such/file"], "does not exist"),
    (["topic", "create"], "give the topic name"),
    (["topic", "create", "t", "--retention-time", "ages"], "duration"),
    (["topic", "create", "t", "--compression-type", "brotli"], "compression type"),
    (["topic", "create", "t", "--segment-size", "8GiB"], "--segment-size"),
    (["topic", "list", "-O", "xml"], "xml"),
    (["spu", "unregister"], "--id or --name"),
    (["spu", "register", "--id", "1", "-p", "nohost", "-v", "h:1"], "--public-server"),
    (["-c", "h:1", "-P", "p", "topic", "list"], "not both"),
    (["nosuchnoun"], "No such command"),
])
def test_bad_command_lines_exit_2_before_connecting(args, says):
    # -c points nowhere: a command that tried to connect would exit 3, not 2
    result = invoke(*args) if args[0] in ("-c", "nosuchnoun") else invoke("-c", "127.0.0.1:1", *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert says in result.output


def test_consume_accepts_fluvio_spellings_of_choices():
    from fluvial.cli.produce import DELIVERY_SEMANTICS, ISOLATIONS, normalize_choice

    assert normalize_choice("ReadCommitted", ISOLATIONS, "x") == "read_committed"
    assert normalize_choice("read-uncommitted", ISOLATIONS, "x") == "read_uncommitted"
    assert normalize_choice("at-most-once", DELIVERY_SEMANTICS, "x") == "at_most_once"
    assert normalize_choice("AtLeastOnce", DELIVERY_SEMANTICS, "x") == "at_least_once"


# ------------------------------------------------------------------- an unreachable cluster


def test_a_refused_connection_exits_3_with_a_hint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = invoke("-c", f"127.0.0.1:{port}", "topic", "list")
    assert result.exit_code == EXIT_UNREACHABLE
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: cannot connect to 127.0.0.1:")
    assert lines[1].startswith("hint: is the cluster running")
    assert result.stdout == ""


def test_a_silent_cluster_exits_3_after_the_connect_timeout():
    # a listening socket that nobody accepts from: TCP connects, nothing ever answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        result = invoke("-c", f"127.0.0.1:{port}", "--connect-timeout", "0.3", "consume", "t", "-B")
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert f"no answer from the cluster at 127.0.0.1:{port} within 0.3s" in result.stderr


def test_no_profile_is_an_error_with_a_hint(tmp_path):
    result = runner.invoke(app, ["topic", "list"],
                           env={**ENV, "FLUVIAL_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert "error: no profile is selected" in result.stderr
    assert "fluvial cluster start" in result.stderr


# ------------------------------------------------------------------------ the topic config


def test_parse_yaml_reads_the_subset_configs_use():
    text = textwrap.dedent("""\
        ---
        # a comment
        version: 0.1.0
        meta:
          name: "orders"   # trailing comment
        partition:
          count: 3
          maps:
            - id: 0
              replicas: [5001, 5002]
            -
              id: 1
              replicas:
              - 5002
              - 5001
        retention:
          time: 2 days
          note: 'it''s # not a comment'
        empty:
        flags: {a: true, b: null, c: 1.5}
        """)
    assert parse_yaml(text) == {
        "version": "0.1.0",
        "meta": {"name": "orders"},
        "partition": {"count": 3, "maps": [{"id": 0, "replicas": [5001, 5002]},
                                           {"id": 1, "replicas": [5002, 5001]}]},
        "retention": {"time": "2 days", "note": "it's # not a comment"},
        "empty": None,
        "flags": {"a": True, "b": None, "c": 1.5},
    }


@pytest.mark.parametrize("text", ["a: 1\n b: 2\n", "a: [1, 2\n", "a: 'x\n", "a: 1\na: 2\n",
                                  "\ta: 1\n", "- a\nb: 1\n"])
def test_parse_yaml_says_where_it_stops(text):
    with pytest.raises(YamlError, match="line"):
        parse_yaml(text)


def test_topic_config_file_becomes_create_arguments(tmp_path):
    path = tmp_path / "topic.yaml"
    path.write_text(textwrap.dedent("""\
        version: 0.1.0
        meta:
          name: orders
        partition:
          count: 3
          replication: 2
          max-size: 10 GiB
          ignore-rack-assignment: true
        retention:
          time: 7 days
          segment-size: 1.0 GB
        compression:
          type: Lz4
        """))
    assert load_topic_config(path) == {
        "name": "orders", "partitions": 3, "replication": 2, "max_partition_size": 10 << 30,
        "ignore_rack": True, "retention": 604800, "segment_size": 1_000_000_000,
        "compression": "lz4",
    }
    maps = tmp_path / "maps.json"
    maps.write_text('{"meta": {"name": "m"}, "partition": {"maps": [{"id": 0, "replicas": [2, 1]}]}}')
    assert load_topic_config(maps) == {"name": "m", "assigned": {0: [2, 1]}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta:\n  name: x\nmirror: yes\n")
    with pytest.raises(typer.BadParameter, match="unknown section"):
        load_topic_config(bad)


# ------------------------------------------------------------------------------------ help


def _commands(group, path=()):
    """(path, is a group) for every command under ``group``."""
    for name, cmd in sorted(group.commands.items()):
        is_group = hasattr(cmd, "commands")
        yield (*path, name), is_group
        if is_group:
            yield from _commands(cmd, (*path, name))


ALL_COMMANDS = list(_commands(get_command(app)))


def test_every_noun_of_the_issue_is_there():
    names = {" ".join(c) for c, _ in ALL_COMMANDS}
    for expected in ["produce", "consume", "topic create", "topic list", "topic describe",
                     "topic delete", "partition list", "spu list", "spu register",
                     "spu unregister", "consumer list", "consumer delete", "profile current",
                     "profile list", "profile switch", "profile add", "profile rename",
                     "profile delete", "profile export", "cluster start", "cluster status",
                     "cluster shutdown", "cluster resume", "cluster delete", "version"]:
        assert expected in names


@pytest.mark.parametrize("command", [c for c, is_group in ALL_COMMANDS if not is_group], ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert re.search(rf"Example: .*fluvial {' '.join(command)}", result.output), result.output


def test_root_help_has_an_example_and_the_global_options():
    result = invoke("--help")
    assert result.exit_code == 0
    for text in ("Example: fluvial", "--cluster", "--profile", "--tls", "--client-cert"):
        assert text in result.output
