"""A processor's spec: building and checking it (pure; the SC and the CLI both check)."""

from __future__ import annotations

import re

from fluvial.processor.call_state import reserved_name_error
from fluvial.protocol.processor_objects import DEFAULT_MAX_FAILURES, DEFAULT_WINDOW_MS, ProcessorSpec

_FUNCTION = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def processor_spec(function: str, inputs: list[str], outputs: list[str], *,
                   window: float | None = None, window_count: int | None = None,
                   path: str = "", invoker: str = "", dead_letter: str = "",
                   max_failures: int = DEFAULT_MAX_FAILURES) -> ProcessorSpec:
    """The spec; ``window`` seconds or ``window_count`` records (default: 60 s windows).

    Raises:
        ValueError: as ``spec_error``.
    """
    if window is not None and window_count is not None:
        raise ValueError("give a time window or a count window, not both")
    ms = 0 if window_count is not None else (DEFAULT_WINDOW_MS if window is None else round(window * 1000))
    spec = ProcessorSpec(function, list(inputs), list(outputs), ms, window_count or 0, path,
                         invoker, dead_letter, max_failures)
    err = spec_error(spec)
    if err:
        raise ValueError(err)
    return spec


def invoker_target(url: str) -> str:
    """``HOST:PORT`` of a riff invoker's ``grpc://HOST:PORT`` (``grpc://[::1]:8081`` too).

    Raises:
        ValueError: not that form.
    """
    scheme, sep, target = url.partition("://")
    host, colon, port = target.rpartition(":")
    if scheme != "grpc" or not sep or not colon or not host or not port.isdigit() or "/" in target \
            or not 0 < int(port) < 65536:
        raise ValueError(f"invoker {url!r} must be grpc://HOST:PORT")
    return target


def spec_error(spec: ProcessorSpec, name: str | None = None) -> str | None:
    """What is wrong with ``spec`` (and ``name``), or None."""
    if name is not None and not _NAME.match(name):
        return f"invalid processor name {name!r}: lowercase letters, digits and '-', at most 63"
    if name is not None and reserved_name_error(name):
        return reserved_name_error(name)
    if not spec.invoker and not _FUNCTION.match(spec.function):
        return f"function {spec.function!r} must be MODULE:NAME (e.g. mypkg.avg:average)"
    if not spec.inputs:
        return "a processor needs at least one input topic"
    if not spec.outputs:
        return "a processor needs at least one output topic"
    if len(set(spec.inputs)) != len(spec.inputs) or len(set(spec.outputs)) != len(spec.outputs):
        return "an input or output topic is named twice"
    if set(spec.inputs) & set(spec.outputs):
        return "a topic cannot be both an input and an output"
    if (spec.window_ms == 0) == (spec.window_count == 0):
        return "exactly one of a time window (> 0 ms) and a count window (> 0 records)"
    if spec.max_failures < 1:
        return "max failures must be at least 1"
    if spec.invoker:
        try:
            invoker_target(spec.invoker)
        except ValueError as e:
            return str(e)
    return None


__all__ = ["invoker_target", "processor_spec", "spec_error"]
