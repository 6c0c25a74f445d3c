"""Hook functions for the gateway tests (``--auth-function gateway.hookfns:auth`` with ``tests``
on the path, or passed directly to ``GatewayConfig``)."""

from __future__ import annotations

import time

import trio

CALLS: list[tuple[str, dict]] = []


def auth(req: dict):
    """Tokens: ``good`` (context {user: ann}), ``raise``, ``hang``, ``async``; anything else refused."""
    CALLS.append(("auth", req))
    token = req["query_params"].get("authToken")
    if token == "good":
        return {"context": {"user": "ann"}}
    if token == "raise":
        raise RuntimeError("auth blew up")
    if token == "hang":
        time.sleep(30)
    return None


async def auth_async(req: dict):
    await trio.sleep(0)
    return {"context": {"user": req["query_params"].get("authToken")}}


async def on_join(sub: dict):
    """Groups: ``secret`` refused, ``boom`` raises, ``slow`` hangs; others allowed."""
    CALLS.append(("join", sub))
    if sub["group_id"] == "secret":
        return {"unauthorized": True}
    if sub["group_id"] == "boom":
        raise ValueError("join hook blew up")
    if sub["group_id"] == "slow":
        await trio.sleep_forever()
    return None


def on_leave(sub: dict):
    CALLS.append(("leave", sub))
    if sub["group_id"] == "boom":
        raise ValueError("leave hook blew up")
