"""``fluvial smartmodule create|list|delete`` and ``fluvial consume --smartmodule...`` against a
real cluster (``local_cluster``), with the WAT-built test modules."""

from __future__ import annotations

import json

from smartmodule.modules import wasm_gz, write_wasm


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def _topic_with(c, name, values):
    ok(c.invoke("topic", "create", name))
    ok(c.invoke("produce", name, input="\n".join(values) + "\n"))


def test_create_list_consume_delete(local_cluster, fresh_topic, tmp_path):
    c = local_cluster
    topic = fresh_topic()
    _topic_with(c, topic, ["apple", "kiwi", "banana"])
    upper = write_wasm("map", tmp_path)
    gz = tmp_path / "filter.wasm.gz"
    gz.write_bytes(wasm_gz("filter"))
    assert ok(c.invoke("smartmodule", "create", "cli-upper", "--wasm-file", str(upper))).stdout == \
        "smartmodule 'cli-upper' created\n"
    ok(c.invoke("smartmodule", "create", "cli-has-a", "--wasm-file", str(gz)))
    listed = json.loads(ok(c.invoke("smartmodule", "list", "-O", "json")).stdout)
    assert {r["name"] for r in listed} >= {"cli-upper", "cli-has-a"}
    assert all(r["size"] > 0 for r in listed)
    assert "cli-upper" in ok(c.invoke("smartmodule", "list")).stdout

    got = ok(c.invoke("consume", topic, "-B", "-d", "--smartmodule", "cli-upper")).stdout
    assert got == "APPLE\nKIWI\nBANANA\n"
    got = ok(c.invoke("consume", topic, "-B", "-d", "--smartmodule", "cli-has-a",
                      "-F", "{{offset}} {{value}}")).stdout
    assert got == "0 apple\n2 banana\n"

    assert ok(c.invoke("smartmodule", "delete", "cli-upper", "cli-has-a")).stdout.count("deleted") == 2
    gone = c.invoke("smartmodule", "delete", "cli-upper")
    assert gone.exit_code != 0 and "cli-upper" in gone.output


def test_consume_with_a_path_params_and_aggregate(local_cluster, fresh_topic, tmp_path):
    c = local_cluster
    topic = fresh_topic()
    _topic_with(c, topic, ["red", "green", "blue"])
    needle = write_wasm("filter_param", tmp_path)
    got = ok(c.invoke("consume", topic, "-B", "-d", "--smartmodule-path", str(needle), "-e", "needle=ee"))
    assert got.stdout == "green\n"
    agg = write_wasm("aggregate", tmp_path)
    got = ok(c.invoke("consume", topic, "-B", "-d", "--smartmodule-path", str(agg),
                      "--aggregate-initial", "+"))
    assert got.stdout == "+red\n+redgreen\n+redgreenblue\n"


def test_bad_smartmodule_options_and_modules(local_cluster, fresh_topic, tmp_path):
    c = local_cluster
    topic = fresh_topic()
    _topic_with(c, topic, ["x"])
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"not wasm")
    r = c.invoke("smartmodule", "create", "junk", "--wasm-file", str(junk))
    assert r.exit_code == 2 and "not a SmartModule" in r.output
    r = c.invoke("consume", topic, "-B", "-d", "--smartmodule", "a", "--smartmodule-path", str(junk))
    assert r.exit_code == 2 and "not both" in r.output
    r = c.invoke("consume", topic, "-B", "-d", "-e", "k=v")
    assert r.exit_code == 2 and "need --smartmodule" in r.output
    r = c.invoke("consume", topic, "-B", "-d", "--smartmodule-path", str(junk), "-e", "novalue")
    assert r.exit_code == 2 and "key=value" in r.output
    r = c.invoke("consume", topic, "-B", "-d", "--smartmodule-path", str(junk))
    assert r.exit_code != 0 and "SmartModule is invalid" in r.output
    r = c.invoke("consume", topic, "-B", "-d", "--smartmodule", "never-created")
    assert r.exit_code != 0 and "never-created" in r.output


def test_consume_with_fluvio_transforms(local_cluster, fresh_topic, tmp_path):
    c = local_cluster
    topic = fresh_topic()
    _topic_with(c, topic, ["red", "green", "blue"])
    ok(c.invoke("smartmodule", "create", "cli-needle", "--wasm-file", str(write_wasm("filter_param", tmp_path))))
    ok(c.invoke("smartmodule", "create", "cli-upper2", "--wasm-file", str(write_wasm("map", tmp_path))))
    got = ok(c.invoke("consume", topic, "-B", "-d", "--transforms-line", '{"uses":"cli-needle","with":{"needle":"ee"}}',
                      "--transforms-line", '{"uses":"cli-upper2"}'))
    assert got.stdout == "GREEN\n"
    yaml = tmp_path / "transforms.yaml"
    yaml.write_text("transforms:\n  - uses: cli-needle\n    with:\n      needle: \"e\"\n"
                    "    lookback:\n      last: 1\n  - uses: cli-upper2\n")
    assert ok(c.invoke("consume", topic, "-B", "-d", "--transforms", str(yaml))).stdout == "RED\nGREEN\nBLUE\n"
    r = c.invoke("consume", topic, "-B", "-d", "--transforms-line", '{"with":{}}')
    assert r.exit_code == 2 and "uses" in r.output
    r = c.invoke("consume", topic, "-B", "-d", "--transforms-line", "not json")
    assert r.exit_code == 2 and "not JSON" in r.output
    r = c.invoke("consume", topic, "-B", "-d", "--transforms", str(yaml), "--smartmodule", "x")
    assert r.exit_code == 2 and "not both" in r.output
    ok(c.invoke("smartmodule", "delete", "cli-needle", "cli-upper2"))
