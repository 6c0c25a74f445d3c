"""The live page (/ui) in a real headless Chromium, driven over the DevTools protocol: it
subscribes to a group and shows its items as they change. A screenshot is left in tmp_path."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import urllib.request

import pytest
import trio
from trio_websocket import open_websocket_url

from .conftest import stream_name

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="no Chromium (apt-get install chromium): the live page is not tested")


class Page:
    """One page over the DevTools protocol."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params):
        i = next(self.ids)
        await self.ws.send_message(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.get_message())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def eval(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, expected, timeout: float = 20):
        with trio.move_on_after(timeout):
            while (value := await self.eval(expression)) != expected:
                await trio.sleep(0.05)
            return
        raise AssertionError(f"{expression} stayed {value!r}, not {expected!r}")


async def devtools_port(profile, proc) -> int:
    active = profile / "DevToolsActivePort"
    with trio.fail_after(30):
        while not active.exists() or not active.read_text().strip():
            if proc.returncode is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode}")
            await trio.sleep(0.05)
    return int(active.read_text().split()[0])


async def test_live_page_shows_items_updating(fl, gateway, tmp_path):
    s = stream_name("ui")
    streams = fl.streams()
    await streams.set(s, "main", "a", {"price": 1})
    profile = tmp_path / "chromium"
    argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}", "--window-size=900,600",
            f"http://127.0.0.1:{gateway.port}/ui?stream={s}&group=main"]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            task_status=task_status))
        try:
            port = await devtools_port(profile, proc)
            with trio.fail_after(30):
                while True:
                    targets = json.loads(await trio.to_thread.run_sync(
                        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read()))
                    pages = [t for t in targets if t["type"] == "page" and "/ui" in t["url"]]
                    if pages:
                        break
                    await trio.sleep(0.1)
            async with open_websocket_url(pages[0]["webSocketDebuggerUrl"], max_message_size=64 << 20) as ws:
                page = Page(ws)
                await page.wait_for("document.body.dataset.items", "1")
                await streams.set(s, "main", "b", {"price": 2})
                await streams.set(s, "main", "a", {"price": 3})
                await page.wait_for("document.body.dataset.items", "2")
                await page.wait_for(
                    "[...document.querySelectorAll('#items tr')].map(r => r.innerText).join('|')",
                    'a\t{"price":3,"id":"a"}|b\t{"price":2,"id":"b"}')
                await streams.delete(s, "main", "b")
                await page.wait_for("document.body.dataset.items", "1")
                shot = await page.call("Page.captureScreenshot", format="png")
                png = base64.b64decode(shot["data"])
                assert png.startswith(b"\x89PNG")
                (tmp_path / "ui.png").write_bytes(png)
                print(f"screenshot: {tmp_path / 'ui.png'}")
        finally:
            proc.terminate()
            with trio.move_on_after(10):
                await proc.wait()
            nursery.cancel_scope.cancel()
