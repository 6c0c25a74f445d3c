"""The streaming processing unit (SPU): replicas on disk, produce and consume, replication."""
