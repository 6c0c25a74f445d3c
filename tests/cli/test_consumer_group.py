"""``fluvial consume T --group G`` and ``fluvial consumer-group ...`` against a real cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from fluvial.cli.consumer_group import group_rows, parse_datetime
from fluvial.cli.topic import parse_yaml
from fluvial.protocol import group_api as g

from .test_e2e import DEADLINE_SECONDS, _read_until


def test_group_rows_and_datetime_are_pure():
    info = g.GroupInfo("grp", "t", 3, [g.MemberInfo("m1", "c", "host/1", [0])],
                       [g.CommittedOffset("t", 0, 4), g.CommittedOffset("other", 0, 9)])
    assert group_rows(info, {0: 10, 1: 5}) == [
        {"topic": "t", "partition": 0, "member": "m1", "host": "host/1", "committed": 4, "end": 10, "lag": 6},
        {"topic": "t", "partition": 1, "member": None, "host": None, "committed": None, "end": 5, "lag": 5},
    ]
    assert parse_datetime("1970-01-01T00:00:01Z") == 1000
    assert parse_datetime("1970-01-01T00:00:01") == 1000


def test_consume_with_a_group_then_describe_reset_delete(local_cluster):
    c = local_cluster
    name = f"grp-{os.getpid()}"
    group = f"billing-{os.getpid()}"
    assert c.run("topic", "create", name, "-p", "2").returncode == 0
    assert c.run("produce", name, input=b"".join(b"r%d\n" % i for i in range(6))).returncode == 0
    proc = subprocess.Popen([str(c.script), "consume", name, "--group", group, "-B"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=c.env)
    try:
        seen = bytearray()
        for i in range(6):
            _read_until(proc, b"r%d\n" % i, seen)
        live = json.loads(c.run("consumer-group", "describe", group, "-O", "json").stdout)
        assert live["topic"] == name and len(live["members"]) == 1
        assert sorted(live["members"][0]["partitions"]) == [0, 1]
        busy = c.run("consumer-group", "reset-offsets", group, "--topic", name, "--to-earliest")
        assert busy.returncode == 1 and b"stop them first" in busy.stderr
        assert c.run("consumer-group", "delete", group).returncode == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE_SECONDS) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    # closed cleanly: it committed everything and left the group
    done = json.loads(c.run("consumer-group", "describe", group, "-O", "json").stdout)
    assert done["members"] == []
    assert sum(r["committed"] for r in done["partitions"]) == 6
    assert all(r["lag"] == 0 for r in done["partitions"])
    assert parse_yaml(c.run("consumer-group", "describe", group, "-O", "yaml").stdout.decode()) == done
    listed = json.loads(c.run("consumer-group", "list", "-O", "json").stdout)
    assert {"group": group, "topic": name, "generation": done["generation"], "members": 0} in listed
    table = c.run("consumer-group", "describe", group)
    assert table.returncode == 0 and b"LAG" in table.stdout
    reset = c.run("consumer-group", "reset-offsets", group, "--topic", name, "--to-earliest", "-O", "json")
    assert reset.returncode == 0, reset.stderr
    assert [r["offset"] for r in json.loads(reset.stdout)] == [0, 0]
    later = c.run("consumer-group", "reset-offsets", group, "--topic", name,
                  "--to-datetime", "2999-01-01T00:00:00Z", "-O", "json")
    assert sum(r["offset"] for r in json.loads(later.stdout)) == 6
    earlier = c.run("consumer-group", "reset-offsets", group, "--topic", name,
                    "--to-datetime", "2000-01-01T00:00:00Z", "-O", "json")
    assert [r["offset"] for r in json.loads(earlier.stdout)] == [0, 0]
    one = c.run("consumer-group", "reset-offsets", group, "--topic", name, "--to-offset", "1", "-p", "0",
                "-O", "json")
    assert json.loads(one.stdout) == [{"group": group, "topic": name, "partition": 0, "offset": 1}]
    assert c.run("consumer-group", "delete", group).returncode == 0
    missing = c.run("consumer-group", "describe", group)
    assert missing.returncode == 1 and b"GROUP_NOT_FOUND" in missing.stderr


def test_bad_flags(local_cluster):
    c = local_cluster
    assert c.run("consume", "t", "--group", "g", "-p", "0").returncode == 2
    assert c.run("consume", "t", "--group", "g", "-d").returncode == 2
    assert c.run("consumer-group", "reset-offsets", "g", "--topic", "t").returncode == 2
    assert c.run("consumer-group", "reset-offsets", "g", "--topic", "t", "--to-earliest",
                 "--to-latest").returncode == 2
    bad_time = c.run("consumer-group", "reset-offsets", "g", "--topic", "t", "--to-datetime", "yesterday")
    assert bad_time.returncode == 2
    missing_topic = c.run("consumer-group", "reset-offsets", "g", "--topic", "no-such-topic-x", "--to-earliest")
    assert missing_topic.returncode == 1 and b"Traceback" not in missing_topic.stderr
