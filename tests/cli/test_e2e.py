"""End to end through the installed ``fluvial`` console script, in subprocesses, against a real
cluster: bulk produce and consume compared byte for byte, offsets, JSON output, exit codes,
Ctrl-C and a reader that goes away."""

from __future__ import annotations

import json
import os
import pty
import random
import select
import signal
import socket
import subprocess
import time

import pytest

DEADLINE_SECONDS = 30


@pytest.fixture(scope="module")
def big_topic(local_cluster, tmp_path_factory):
    """A one-partition topic holding a 100,000-line file (the file's path and its lines)."""
    c = local_cluster
    name = f"e2e-big-{os.getpid()}"
    assert c.run("topic", "create", name).returncode == 0
    path = tmp_path_factory.mktemp("e2e") / "lines.txt"
    lines = [f"line {i} \u2603 {'x' * (i % 50)}".encode() for i in range(100_000)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    started = time.monotonic()
    produced = c.run("produce", name, "-f", str(path))
    elapsed = time.monotonic() - started
    assert produced.returncode == 0, produced.stderr.decode()
    assert produced.stdout == b""
    summary = produced.stderr.decode()
    assert f"produced 100,000 records ({_size(path.stat().st_size - len(lines))}) to '{name}'" in summary
    print(f"fluvial produce of a 100,000-line file: {elapsed:.2f}s ({summary.strip()})")
    return name, path, lines


def _size(n: int) -> str:
    from fluvial.cli.common import format_size

    return format_size(n)


def test_a_file_comes_back_byte_for_byte(local_cluster, big_topic):
    name, path, _ = big_topic
    consumed = local_cluster.run("consume", name, "-B", "-d")
    assert consumed.returncode == 0, consumed.stderr.decode()
    assert consumed.stdout == path.read_bytes()
    assert consumed.stderr == b""  # not a terminal: no status line


def test_head_tail_start_and_end(local_cluster, big_topic):
    name, _, lines = big_topic
    c = local_cluster

    def consume(*args: str) -> list[bytes]:
        result = c.run("consume", name, "-d", *args)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.splitlines()

    assert consume("-T", "3") == lines[-3:]
    assert consume("-H", "99998") == lines[-2:]
    assert consume("--start", "10", "--end", "12") == lines[10:13]
    assert consume("-B", "--end", "1") == lines[:2]
    assert consume("-T", "1", "-F", "{{offset}}") == [b"99999"]


def test_stdin_and_raw_records(local_cluster, tmp_path):
    c = local_cluster
    name = f"e2e-raw-{os.getpid()}"
    assert c.run("topic", "create", name).returncode == 0
    blob = random.Random(7).randbytes(200_000) + b"\x00\n\r\n"
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    assert c.run("produce", name, "--raw", "-f", str(path)).returncode == 0
    text = b"".join(b"stdin %d\r\n" % i for i in range(1000))  # CRLF endings are not kept
    produced = c.run("produce", name, input=text)
    assert produced.returncode == 0, produced.stderr.decode()
    assert b"produced 1,000 records" in produced.stderr
    raw = c.run("consume", name, "-B", "-d", "--end", "0", "-O", "raw")
    assert raw.returncode == 0 and raw.stdout == blob
    lines = c.run("consume", name, "--start", "1", "-d")
    assert lines.stdout == text.replace(b"\r\n", b"\n")


def test_a_progress_bar_on_a_terminal(local_cluster, big_topic):
    c = local_cluster
    name = f"e2e-bar-{os.getpid()}"
    assert c.run("topic", "create", name).returncode == 0
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(c.script), "produce", name, "-f", str(big_topic[1])],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                                env={**c.env, "TERM": "xterm", "COLUMNS": "100"})
        os.close(slave)
        seen = bytearray()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer has gone
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=DEADLINE_SECONDS) == 0
    finally:
        os.close(master)
    screen = bytes(seen).decode(errors="replace")
    assert "100%" in screen and str(big_topic[1]) in screen
    assert "produced 100,000 records" in screen


def test_list_output_is_json(local_cluster, big_topic):
    name = big_topic[0]
    result = local_cluster.run("topic", "list", "-O", "json")
    assert result.returncode == 0
    topics = {t["name"]: t for t in json.loads(result.stdout)}
    assert topics[name]["partitions"] == 1 and topics[name]["status"] == "Provisioned"
    parts = json.loads(local_cluster.run("partition", "list", "-t", name, "-O", "json").stdout)
    assert parts[0]["leader"] == 5001


def test_an_unreachable_cluster_exits_3(local_cluster):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = local_cluster.run("-c", f"127.0.0.1:{port}", "consume", "t", "-B")
    assert result.returncode == 3
    err = result.stderr.decode().splitlines()
    assert len(err) == 2 and err[0].startswith("error: cannot connect") and err[1].startswith("hint: ")
    usage = local_cluster.run("consume", "t", "-B", "-T", "1")
    assert usage.returncode == 2


def _read_until(proc: subprocess.Popen, wanted: bytes, seen: bytearray) -> None:
    """Read the process's stdout into ``seen`` until ``wanted`` is in it (or fail)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    fd = proc.stdout.fileno()
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} did not show up; got {bytes(seen)[-200:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"stdout closed before {wanted!r} showed up (exit {proc.wait()})"
            seen += chunk


def test_ctrl_c_stops_a_live_consumer_with_exit_0(local_cluster):
    c = local_cluster
    name = f"e2e-live-{os.getpid()}"
    consumer = f"live-{os.getpid()}"
    assert c.run("topic", "create", name).returncode == 0
    assert c.run("produce", name, input=b"before\n").returncode == 0
    proc = subprocess.Popen([str(c.script), "consume", name, "-B", "-c", consumer],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=c.env)
    try:
        seen = bytearray()
        _read_until(proc, b"before\n", seen)
        assert c.run("produce", name, input=b"during 1\nduring 2\n").returncode == 0
        _read_until(proc, b"during 2\n", seen)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE_SECONDS) == 0
        assert bytes(seen) + proc.stdout.read() == b"before\nduring 1\nduring 2\n"
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    # the consumer id stored where it stopped
    resumed = c.run("consume", name, "-d", "-c", consumer)
    assert resumed.returncode == 0 and resumed.stdout == b""


def test_a_reader_that_goes_away_ends_consume_quietly(local_cluster, big_topic):
    name = big_topic[0]
    proc = subprocess.Popen([str(local_cluster.script), "consume", name, "-B", "-d"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=local_cluster.env)
    try:
        assert proc.stdout.readline().startswith(b"line 0 ")
        proc.stdout.close()  # like `| head -1`
        assert proc.wait(timeout=DEADLINE_SECONDS) == 0
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
