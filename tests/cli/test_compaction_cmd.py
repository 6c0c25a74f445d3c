"""``fluvial topic create --cleanup-policy compact`` and its bad flags."""

from __future__ import annotations


def test_create_a_compacted_topic(local_cluster, fresh_topic):
    name = fresh_topic()
    result = local_cluster.invoke("topic", "create", name, "--cleanup-policy", "compact",
                                  "--tombstone-retention", "1h", "--min-compaction-lag", "10s",
                                  "--min-cleanable-dirty-ratio", "0.25")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"topic '{name}' created\n"


def test_bad_cleanup_flags_are_refused_before_anything_is_created(local_cluster, fresh_topic):
    name = fresh_topic()
    bad = [("--cleanup-policy", "shrink"), ("--tombstone-retention", "soon"),
           ("--min-cleanable-dirty-ratio", "1.5")]
    for flag, value in bad:
        result = local_cluster.invoke("topic", "create", name, flag, value)
        assert result.exit_code == 2, (flag, result.output)
        assert flag.lstrip("-").split("-")[0] in result.output.lower() or "duration" in result.output
    listed = local_cluster.invoke("topic", "list")
    assert name not in listed.stdout
