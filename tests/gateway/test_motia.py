"""Motia's own stream client (the npm package @motiadev/stream-client-node, which iii's clients
share) against the gateway, unchanged. Needs node and `npm install` in tests/gateway/motia."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from .conftest import stream_name

MOTIA = Path(__file__).parent / "motia"
CLIENT = MOTIA / "node_modules" / "@motiadev" / "stream-client-node"


def _skip_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not CLIENT.exists():
        return ("Motia's stream client is not installed: "
                "npm install --prefix tests/gateway/motia --no-audit --no-fund")
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


async def test_motia_stream_client_follows_items_groups_and_events(fl, gateway):
    s = stream_name("motia")
    streams = fl.streams()
    await streams.set(s, "room", "a", {"text": "first"})
    lines: list[dict] = []
    changed = trio.Condition()

    async def wait_for(expected: dict) -> None:
        with trio.move_on_after(20):
            async with changed:
                while expected not in lines:
                    await changed.wait()
                return
        raise AssertionError(f"Motia's client never printed {expected}; it printed {lines}")

    async with trio.open_nursery() as nursery:
        argv = ["node", str(MOTIA / "subscribe.mjs"), f"ws://127.0.0.1:{gateway.port}/", s, "room", "a"]
        proc = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False,
            task_status=task_status))

        async def read():
            buf = b""
            async for chunk in proc.stdout:
                buf += chunk
                *done, buf = buf.split(b"\n")
                async with changed:
                    lines.extend(json.loads(x) for x in done if x)
                    changed.notify_all()

        nursery.start_soon(read)
        await wait_for({"sub": "group", "state": [{"text": "first", "id": "a"}]})
        await wait_for({"sub": "item", "state": {"text": "first", "id": "a"}})
        await streams.set(s, "room", "b", {"text": "second"})
        await streams.set(s, "room", "a", {"text": "edited"})
        await streams.send(s, "room", "note", {"n": 1}, item_id="a")
        await streams.delete(s, "room", "b")
        await wait_for({"sub": "group", "state": [{"text": "edited", "id": "a"}]})
        await wait_for({"sub": "item", "state": {"text": "edited", "id": "a"}})
        await wait_for({"sub": "item", "event": {"n": 1}})
        await wait_for({"sub": "group", "event": {"n": 1}})
        groups = [x["state"] for x in lines if x["sub"] == "group" and "state" in x]
        assert groups == [
            [{"text": "first", "id": "a"}],
            [{"text": "first", "id": "a"}, {"text": "second", "id": "b"}],
            [{"text": "edited", "id": "a"}, {"text": "second", "id": "b"}],
            [{"text": "edited", "id": "a"}]]
        await proc.stdin.aclose()
        with trio.fail_after(10):
            await proc.wait()
        nursery.cancel_scope.cancel()
