"""The `fluvial` command line: cluster, topic, produce, consume, profile and the servers."""
