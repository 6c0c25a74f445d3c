"""``fluvial processor create|list|describe|delete`` and their bad flags."""

from __future__ import annotations

import json


def test_processor_commands(local_cluster):
    r = local_cluster.invoke("processor", "create", "avg", "--function", "avg:average", "--input", "nums",
                             "--output", "avgs", "--window", "10s", "--path", "fns")
    assert r.exit_code == 0, r.output
    listed = json.loads(local_cluster.invoke("processor", "list", "-O", "json").stdout)
    assert [(p["name"], p["window"], p["state"]) for p in listed] == [("avg", "10s", "Stopped")]
    table = local_cluster.invoke("processor", "list").stdout
    assert "avg:average" in table and "nums" in table
    described = json.loads(local_cluster.invoke("processor", "describe", "avg", "-O", "json").stdout)
    assert described["inputs"] == ["nums"] and described["path"] == "fns" and described["pid"] is None
    assert "state: Stopped" in local_cluster.invoke("processor", "describe", "avg", "-O", "yaml").stdout
    assert local_cluster.invoke("processor", "delete", "avg").exit_code == 0
    missing = local_cluster.invoke("processor", "describe", "avg")
    assert missing.exit_code == 1 and "not found" in missing.output


def test_bad_processor_flags_are_usage_errors(local_cluster):
    base = ["processor", "create", "p", "--input", "a", "--output", "b"]
    for extra, text in [([], "--function"), (["--function", "nocolon"], "MODULE:NAME"),
                        (["--function", "m:f", "--window", "1s", "--window-count", "3"], "not both"),
                        (["--function", "m:f", "--window", "soon"], "duration")]:
        r = local_cluster.invoke(*base, *extra)
        assert r.exit_code == 2 and text in r.output, (extra, r.output)
    assert "no processors" in local_cluster.invoke("processor", "list").output


def test_run_processor_with_a_bad_function_exits_1_and_says_failed(local_cluster, fresh_topic):
    src, dst = fresh_topic(), fresh_topic()
    for t in (src, dst):
        assert local_cluster.invoke("topic", "create", t).exit_code == 0
    assert local_cluster.invoke("processor", "create", "broken", "--function", "nowhere_mod:f",
                                "--input", src, "--output", dst).exit_code == 0
    ran = local_cluster.run("run", "processor", "broken")
    assert ran.returncode == 1 and b"No module named 'nowhere_mod'" in ran.stderr, ran.stderr
    described = json.loads(local_cluster.invoke("processor", "describe", "broken", "-O", "json").stdout)
    assert described["state"] == "Failed" and "ModuleNotFoundError" in described["last_error"]
    assert local_cluster.invoke("processor", "delete", "broken").exit_code == 0
