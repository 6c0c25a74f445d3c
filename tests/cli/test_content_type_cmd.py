"""``fluvial topic create --content-type`` and what ``fluvial produce`` does with a bad value."""

from __future__ import annotations


def test_a_json_topic_refuses_a_line_that_is_not_json(local_cluster, fresh_topic):
    name = fresh_topic()
    result = local_cluster.invoke("topic", "create", name, "--content-type", "application/json")
    assert result.exit_code == 0, result.output
    result = local_cluster.invoke("produce", name, input='{"a": 1}\nnot json\n')
    assert result.exit_code == 1, result.output
    assert "does not fit content type application/json" in result.output
    assert "bug" not in result.output
    consumed = local_cluster.invoke("consume", name, "-B", "-d")
    assert "not json" not in consumed.stdout


def test_a_malformed_content_type_is_a_usage_error(local_cluster, fresh_topic):
    name = fresh_topic()
    result = local_cluster.invoke("topic", "create", name, "--content-type", "json")
    assert result.exit_code == 2 and "type/subtype" in result.output
