"""Processors: functions bound to input and output topics, run in tumbling windows, exactly once
for deterministic functions (docs/processors.md). ``spec`` and ``windows`` are pure; ``runtime``
is the trio half."""
