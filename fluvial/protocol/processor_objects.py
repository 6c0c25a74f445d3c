"""Processor objects: fluvial's own SC object kind (label ``Processor``), spec + status like a
topic's. The official client never lists, watches or creates them; fluvial's CLI and the
processor runtime do (docs/processors.md).

    ProcessorSpec   => function str  inputs [str]  outputs [str]  window_ms u64  window_count u32
                       path str  invoker str  dead_letter str  max_failures u32
    ProcessorStatus => state str  windows_done u64  last_error str  pid i64  host str
                       lag {str: i64}   ("topic/partition" -> records behind)
    Update action (UpdateProcessorAction tag 0) SetProcessorStatus{status}: the runtime reports.

Exactly one of ``window_ms`` and ``window_count`` is non-zero: tumbling windows by time or by
count. Empty strings mean "none" (``path``, ``invoker``, ``dead_letter``).
"""

from __future__ import annotations

from typing import ClassVar

from fluvial.protocol.codec import I64, STR, U32, U64, Map, Union, Vec, message, wire

STOPPED, RUNNING, FAILED = "Stopped", "Running", "Failed"
DEFAULT_WINDOW_MS = 60_000  # riff's one-minute windows
DEFAULT_MAX_FAILURES = 5


@message
class ProcessorStatus:
    state: str = wire(STR, default=STOPPED)
    windows_done: int = wire(U64)
    last_error: str = wire(STR)
    pid: int = wire(I64)
    host: str = wire(STR)
    lag: dict[str, int] = wire(Map(STR, I64))


@message
class ProcessorSpec:
    LABEL: ClassVar[str] = "Processor"
    Status: ClassVar[type] = ProcessorStatus

    function: str = wire(STR)
    inputs: list[str] = wire(Vec(STR))
    outputs: list[str] = wire(Vec(STR))
    window_ms: int = wire(U64)
    window_count: int = wire(U32)
    path: str = wire(STR)
    invoker: str = wire(STR)
    dead_letter: str = wire(STR)
    max_failures: int = wire(U32, default=DEFAULT_MAX_FAILURES)


@message
class SetProcessorStatus:
    status: ProcessorStatus = wire(ProcessorStatus)


UPDATE_PROCESSOR_ACTION = Union("UpdateProcessorAction", {0: SetProcessorStatus},
                                default=SetProcessorStatus)

__all__ = ["DEFAULT_MAX_FAILURES", "DEFAULT_WINDOW_MS", "FAILED", "RUNNING", "STOPPED",
           "UPDATE_PROCESSOR_ACTION", "ProcessorSpec", "ProcessorStatus", "SetProcessorStatus"]
