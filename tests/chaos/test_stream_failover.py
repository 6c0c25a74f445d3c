"""A bounded stream across a leader kill -9, with the sink and the source in processes of
their own (``fluvial produce --stream`` and ``fluvial consume --stream``): the source prints
every record exactly once, in order, and exits 0 at the stream's EOS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from harness.processes import fluvial_command

TOPIC = "jobs"
STREAM = "run-7"
DEADLINE = 90.0


def _reader(proc: subprocess.Popen, lines: list[bytes]) -> threading.Thread:
    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip(b"\n"))
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def _wait_for(condition, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_stream_survives_a_leader_kill_between_two_processes(make_cluster):
    cluster = make_cluster(3)
    cluster.cli("topic", "create", TOPIC, "--replication", "3")
    env = dict(os.environ, FLUVIAL_HOME=str(cluster.home))
    env.pop("FLUVIAL_CONFIG", None)
    source = subprocess.Popen([*fluvial_command(), "consume", TOPIC, "--stream", STREAM],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sink = subprocess.Popen([*fluvial_command(), "produce", TOPIC, "--stream", STREAM], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    got: list[bytes] = []
    reader = _reader(source, got)
    try:
        first = [b"rec-%04d" % i for i in range(200)]
        second = [b"rec-%04d" % i for i in range(200, 400)]
        sink.stdin.write(b"\n".join(first) + b"\n")
        sink.stdin.flush()
        _wait_for(lambda: len(got) >= 100, "the source to print 100 records")
        rows = json.loads(cluster.cli("partition", "list", "-O", "json").stdout)
        (leader,) = [r["leader"] for r in rows if r["topic"] == TOPIC]
        cluster.kill(cluster.spu_name(leader))
        sink.stdin.write(b"\n".join(second) + b"\n")
        sink.stdin.close()  # end of input: the sink closes the stream (EOS)
        assert sink.wait(DEADLINE) == 0, sink.stderr.read().decode()
        assert source.wait(DEADLINE) == 0, source.stderr.read().decode()
        reader.join(5)
        assert got == first + second
    finally:
        for p in (sink, source):
            if p.poll() is None:
                p.kill()
                p.wait()
        reader.join(5)
        for f in (sink.stdin, sink.stderr, source.stdout, source.stderr):
            f.close()


SINK_SCRIPT = """
import sys, fluvial.sync
with fluvial.sync.connect() as fl:
    sink = fl.sink(sys.argv[1], stream=sys.argv[2], session_timeout=1.0)
    sink.__enter__()
    for i in range(5):
        sink.send(b"%d" % i).wait()
    print("sent", flush=True)
    sys.stdin.read()  # until killed
"""


def test_a_killed_sink_process_is_declared_aborted_and_its_source_exits_non_zero(make_cluster):
    cluster = make_cluster(3)
    cluster.cli("topic", "create", TOPIC, "--replication", "3")
    env = dict(os.environ, FLUVIAL_HOME=str(cluster.home))
    env.pop("FLUVIAL_CONFIG", None)
    sink = subprocess.Popen([sys.executable, "-c", SINK_SCRIPT, TOPIC, "doomed"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert sink.stdout.readline() == b"sent\n", sink.stderr.read().decode()
        sink.kill()  # SIGKILL: no EOS, no abort marker, no more keep-alives
        sink.wait()
        consume = subprocess.run([*fluvial_command(), "consume", TOPIC, "--stream", "doomed"],
                                 env=env, capture_output=True, timeout=DEADLINE)
        assert consume.returncode != 0
        assert consume.stdout.split() == [b"%d" % i for i in range(5)]
        assert b"aborted" in consume.stderr
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
        for f in (sink.stdin, sink.stdout, sink.stderr):
            f.close()
