"""The gateway's user functions: ``--auth-function``, ``--on-join`` and ``--on-leave``.

Each is named ``pkg.module:fn`` and is a plain or an ``async`` (trio) function of one dict. A
plain function runs in a worker thread, so that one that blocks cannot stall the gateway. A call
that raises or takes longer than its timeout is logged and counts as a refusal (auth and join:
fail closed); it never takes the gateway down.

* auth: ``fn({"headers", "path", "query_params", "addr"})`` returns ``{"context": ...}`` to
  accept the socket; None, False or ``{"unauthorized": True}`` refuses it (HTTP 401).
* join: ``fn({"subscription_id", "stream_name", "group_id", "id", "context"})``; returning
  ``{"unauthorized": True}`` (or False) refuses that subscription.
* leave: same argument; the result is ignored.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger("fluvial.gateway.hooks")

DEFAULT_HOOK_TIMEOUT = 5.0


class HookError(ValueError):
    """A hook spec that does not name a callable."""


def load_function(spec: str) -> Callable:
    """The callable named by ``pkg.module:fn``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HookError(f"a hook is named pkg.module:function, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise HookError(f"cannot import {module_name!r} for {spec!r}: {e}") from None
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
    if not callable(fn):
        raise HookError(f"{spec!r} is not a function")
    return fn


@dataclass(frozen=True)
class Outcome:
    ok: bool           # the function returned (False: it raised or timed out)
    value: Any = None


async def call_hook(name: str, fn: Callable, arg: dict, timeout: float) -> Outcome:
    """Call ``fn(arg)`` under ``timeout`` seconds; never raises (but for cancellation)."""
    with trio.move_on_after(timeout) as scope:
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(arg)
            else:
                value = await trio.to_thread.run_sync(fn, arg, abandon_on_cancel=True)
            return Outcome(True, value)
        except Exception:
            log.exception("%s hook %r raised", name, getattr(fn, "__qualname__", fn))
            return Outcome(False)
    if scope.cancelled_caught:
        log.error("%s hook %r took more than %.1fs", name, getattr(fn, "__qualname__", fn), timeout)
    return Outcome(False)


def auth_context(outcome: Outcome) -> tuple[bool, Any]:
    """(accepted, context) from an auth function's outcome."""
    if not outcome.ok or outcome.value is None or outcome.value is False:
        return False, None
    value = outcome.value
    if isinstance(value, dict):
        if value.get("unauthorized"):
            return False, None
        return True, value.get("context")
    return True, value


def join_allowed(outcome: Outcome) -> bool:
    if not outcome.ok or outcome.value is False:
        return False
    return not (isinstance(outcome.value, dict) and outcome.value.get("unauthorized"))
