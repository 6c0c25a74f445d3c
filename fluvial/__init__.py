"""fluvial: a distributed, replicated, durable log cluster speaking Fluvio's wire protocol."""

__version__ = "0.1.0"
