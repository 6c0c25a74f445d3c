"""The nouns against a real cluster (``local_cluster``), through CliRunner: what they print in
each output format, and their errors and exit codes."""

from __future__ import annotations

import json

from fluvial.cli.topic import parse_yaml


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def test_topic_create_describe_list_delete(local_cluster, fresh_topic):
    c = local_cluster
    name = fresh_topic()
    result = ok(c.invoke("topic", "create", name, "-p", "2", "--retention-time", "1d",
                         "--segment-size", "64MiB", "--max-partition-size", "1GiB",
                         "--compression-type", "lz4"))
    assert result.stdout == f"topic '{name}' created\n"

    described = json.loads(ok(c.invoke("topic", "describe", name, "-O", "json")).stdout)
    assert described == {
        "name": name, "partitions": 2, "replication_factor": 1, "retention_seconds": 86400,
        "segment_size": 64 << 20, "max_partition_size": 1 << 30, "compression": "lz4",
        "ignore_rack_assignment": False, "system": False, "status": "Provisioned", "reason": "",
        "replica_map": {"0": [5001], "1": [5001]},
    }
    assert parse_yaml(ok(c.invoke("topic", "describe", name, "-O", "yaml")).stdout) == described
    table = ok(c.invoke("topic", "describe", name)).stdout
    assert "retention               1d" in table and "segment_size            64 MiB" in table

    listed = json.loads(ok(c.invoke("topic", "list", "-O", "json")).stdout)
    assert described in listed
    rows = [line.split() for line in ok(c.invoke("topic", "list")).stdout.splitlines()]
    assert rows[0] == ["NAME", "PARTITIONS", "REPLICAS", "RETENTION", "COMPRESSION", "STATUS", "REASON"]
    assert [name, "2", "1", "1d", "lz4", "Provisioned"] in rows

    again = c.invoke("topic", "create", name)
    assert again.exit_code == 1
    assert again.stderr.splitlines() == [f"error: topic '{name}' already exists",
                                         f"hint: `fluvial topic describe {name}` shows it"]

    assert ok(c.invoke("topic", "delete", name)).stdout == f"topic '{name}' deleted\n"
    assert name not in [t["name"] for t in json.loads(c.invoke("topic", "list", "-O", "json").stdout)]
    gone = c.invoke("topic", "delete", name)
    assert gone.exit_code == 1
    assert gone.stderr.splitlines() == [f"error: topic '{name}' not found",
                                        "hint: list the topics with `fluvial topic list`"]
    missing = c.invoke("topic", "describe", name)
    assert missing.exit_code == 1 and f"topic '{name}' not found" in missing.stderr


def test_topic_delete_can_go_on_after_an_error(local_cluster, fresh_topic):
    c = local_cluster
    name = fresh_topic()
    ok(c.invoke("topic", "create", name))
    result = c.invoke("topic", "delete", "no-such-topic-here", name, "--continue-on-error")
    assert result.exit_code == 1
    assert f"topic '{name}' deleted" in result.stdout
    assert "error: topic 'no-such-topic-here' not found" in result.stderr
    assert "1 topic(s) not deleted: no-such-topic-here" in result.stderr


def test_topic_create_from_a_config_file_and_dry_run(local_cluster, fresh_topic, tmp_path):
    c = local_cluster
    name = fresh_topic()
    config = tmp_path / "topic.yaml"
    config.write_text(f"version: 0.1.0\nmeta:\n  name: {name}\npartition:\n  count: 3\n"
                      f"retention:\n  time: 12 hours\ncompression:\n  type: Zstd\n")
    assert "is valid (dry run)" in ok(c.invoke("topic", "create", "-c", str(config), "--dry-run")).stdout
    assert c.invoke("topic", "describe", name).exit_code == 1
    ok(c.invoke("topic", "create", "-c", str(config), "-p", "2"))  # the flag wins over the file
    described = json.loads(c.invoke("topic", "describe", name, "-O", "json").stdout)
    assert (described["partitions"], described["retention_seconds"], described["compression"]) == (
        2, 43200, "zstd")
    invalid = c.invoke("topic", "create", "Not_Valid")
    assert invalid.exit_code == 1
    assert "hint: use lowercase letters, digits and '-'" in invalid.stderr


def test_partition_and_spu_lists(local_cluster, fresh_topic):
    c = local_cluster
    name = fresh_topic()
    ok(c.invoke("topic", "create", name, "-p", "2"))
    parts = json.loads(ok(c.invoke("partition", "list", "--topic", name, "-O", "json")).stdout)
    assert [(p["topic"], p["partition"], p["leader"], p["replicas"], p["resolution"]) for p in parts] == [
        (name, 0, 5001, [5001], "Online"), (name, 1, 5001, [5001], "Online")]
    table = ok(c.invoke("partition", "list", "-t", name)).stdout.splitlines()
    assert table[0].split()[:6] == ["TOPIC", "PARTITION", "LEADER", "REPLICAS", "RESOLUTION", "SIZE"]
    assert len(table) == 3
    system = json.loads(ok(c.invoke("partition", "list", "--system", "-O", "json")).stdout)
    assert [p["topic"] for p in system] == ["consumer-offset"]
    assert c.invoke("partition", "list", "-t", "no-such-topic-here").exit_code == 1

    spus = json.loads(ok(c.invoke("spu", "list", "-O", "json")).stdout)
    assert [(s["id"], s["name"], s["status"]) for s in spus] == [(5001, "custom-spu-5001", "Online")]
    assert parse_yaml(ok(c.invoke("spu", "list", "-O", "yaml")).stdout) == spus


def test_spu_register_and_unregister(local_cluster):
    c = local_cluster
    result = ok(c.invoke("spu", "register", "--id", "5090", "-p", "127.0.0.1:1", "-v", "127.0.0.1:2",
                         "--rack", "r1"))
    assert result.stdout == "SPU 5090 registered as 'custom-spu-5090'\n"
    twice = c.invoke("spu", "register", "--id", "5090", "-p", "127.0.0.1:1", "-v", "127.0.0.1:2")
    assert twice.exit_code == 1 and "already exists" in twice.stderr
    assert ok(c.invoke("spu", "unregister", "--id", "5090")).stdout == "SPU 5090 unregistered\n"
    again = c.invoke("spu", "unregister", "--name", "custom-spu-5090")
    assert again.exit_code == 1
    assert again.stderr.splitlines() == ["error: SPU 'custom-spu-5090' is not a registered custom SPU",
                                         "hint: list the SPUs with `fluvial spu list`"]


def test_produce_and_consume_formats(local_cluster, fresh_topic):
    c = local_cluster
    name = fresh_topic()
    ok(c.invoke("topic", "create", name))
    produced = ok(c.invoke("produce", name, "--key-separator", "=", input="a=1\nb=2\nno separator\nc=3"))
    assert produced.stdout == ""
    assert f"produced 3 records (6 B) to '{name}'" in produced.stderr
    assert "1 line(s) without the separator '=' skipped" in produced.stderr
    verbose = ok(c.invoke("produce", name, "--key", "k", "-v", input='{"n": 4}\n'))
    assert verbose.stdout == '[k] {"n": 4}\n'
    ok(c.invoke("produce", name, "--compression", "gzip", "--linger", "1ms", "--batch-size", "1KiB",
                "--isolation", "read_committed", "--delivery-semantic", "at-most-once",
                input="plain\n"))

    def consume(*args: str) -> str:
        return ok(c.invoke("consume", name, "-d", *args)).stdout

    assert consume("-B") == '1\n2\n3\n{"n": 4}\nplain\n'
    assert consume("-B", "-k") == '[a] 1\n[b] 2\n[c] 3\n[k] {"n": 4}\n[null] plain\n'
    assert consume("-B", "-F", "{{partition}}:{{offset}} {{key}}={{value}}") == (
        '0:0 a=1\n0:1 b=2\n0:2 c=3\n0:3 k={"n": 4}\n0:4 null=plain\n')
    json_out = ok(c.invoke("consume", name, "-d", "-B", "-O", "json"))
    assert [json.loads(line) for line in json_out.stdout.splitlines()] == [1, 2, 3, {"n": 4}]
    assert "offset 4: the value is not JSON" in json_out.stderr
    assert consume("-B", "-O", "raw") == '123{"n": 4}plain'
    assert consume("-T", "2") == '{"n": 4}\nplain\n'
    assert consume("-H", "1", "--end", "2") == "2\n3\n"
    assert consume("--start", "3") == '{"n": 4}\nplain\n'
    assert consume("--start", "1", "--end", "1", "-p", "0") == "2\n"
    assert consume("--isolation", "read_committed", "-b", "1KiB", "-B") == '1\n2\n3\n{"n": 4}\nplain\n'
    assert consume() == ""  # from the end: nothing new


def test_consumer_ids_resume_and_can_be_listed_and_deleted(local_cluster, fresh_topic):
    c = local_cluster
    name = fresh_topic()
    consumer = f"reader-{name}"
    ok(c.invoke("topic", "create", name))
    ok(c.invoke("produce", name, input="one\ntwo\nthree\nfour\n"))
    assert ok(c.invoke("consume", name, "-B", "--end", "1", "-c", consumer)).stdout == "one\ntwo\n"
    assert ok(c.invoke("consume", name, "-d", "-c", consumer)).stdout == "three\nfour\n"
    assert ok(c.invoke("consume", name, "-d", "-c", consumer)).stdout == ""

    stored = [o for o in json.loads(ok(c.invoke("consumer", "list", "-O", "json")).stdout)
              if o["consumer_id"] == consumer]
    assert [(o["topic"], o["partition"], o["offset"]) for o in stored] == [(name, 0, 3)]
    table = ok(c.invoke("consumer", "list")).stdout
    assert consumer in table and "LAST SEEN" in table

    assert ok(c.invoke("consumer", "delete", consumer, "-t", name)).stdout == (
        f"deleted the offset of consumer '{consumer}' for {name} partition 0\n")
    again = c.invoke("consumer", "delete", consumer)
    assert again.exit_code == 1
    assert again.stderr.splitlines() == [f"error: no stored offsets for consumer '{consumer}'",
                                         "hint: list them with `fluvial consumer list`"]
    # forgotten: the consumer starts from the end again
    assert ok(c.invoke("consume", name, "-d", "-c", consumer)).stdout == ""


def test_errors_of_produce_and_consume(local_cluster, fresh_topic):
    c = local_cluster
    result = c.invoke("produce", "no-such-topic-here", input="x\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: topic 'no-such-topic-here' not found",
                                          "hint: list the topics with `fluvial topic list`"]
    result = c.invoke("consume", "no-such-topic-here", "-d")
    assert result.exit_code == 1 and "topic 'no-such-topic-here' not found" in result.stderr
    name = fresh_topic()
    ok(c.invoke("topic", "create", name, "-p", "2", "--compression-type", "zstd"))
    for command in (["produce", name, "-p", "2"], ["consume", name, "-d", "-p", "1", "-p", "5"]):
        result = c.invoke(*command, input="x\n")
        assert result.exit_code == 1
        assert f"topic '{name}' has no partition " in result.stderr
        assert "(partitions: 0 to 1)" in result.stderr
    result = c.invoke("produce", name, "--compression", "gzip", input="x\n")
    assert result.exit_code == 1
    assert "does not match with topic level compression (zstd)" in result.stderr
    assert f"`fluvial topic describe {name}`" in result.stderr


def test_global_options_choose_the_cluster(local_cluster):
    c = local_cluster
    certs = c.home / "certs"
    tls = ["--domain", "fluvial.local", "--ca-cert", str(certs / "ca.crt"),
           "--client-cert", str(certs / "client-admin.crt"), "--client-key", str(certs / "client-admin.key")]
    endpoint = c.endpoint
    ok(c.invoke("-c", endpoint, *tls, "spu", "list"))
    ok(c.invoke("-P", "local", "spu", "list"))
    plain = c.invoke("-c", endpoint, "--connect-timeout", "5", "spu", "list")  # a TLS server
    assert plain.exit_code == 3, plain.output
    unknown = c.invoke("-P", "nope", "spu", "list")
    assert unknown.exit_code == 1
    assert "no profile named 'nope'; known: local" in unknown.stderr
