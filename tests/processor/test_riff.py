"""Processors whose function runs behind a riff invoker (``--invoker grpc://HOST:PORT``): a riff
server written here with grpcio (the time-averager, a two-input two-output router, failures),
and riff's own Node.js invoker from npm where node and npm exist."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path

import pytest
import trio

from fluvial.client.types import Record
from fluvial.processor.riff import DEFAULT_CONTENT_TYPE, MISSING_GRPC, RiffFunction, window_outputs, window_signals
from fluvial.processor.spec import processor_spec
from fluvial.protocol.riff_rpc import (
    SERVICE,
    InputFrame,
    OutputFrame,
    StartFrame,
    decode_input_signal,
    encode_output_signal,
)
from processor.test_runtime import _produce, _read, _start, _wait_records

grpc = pytest.importorskip("grpc", reason="grpcio (the riff extra) is not installed")

TIMEOUT = 45


# ------------------------------------------------------------------- the frames of a window


def test_a_window_becomes_a_start_frame_and_input_frames_by_arg_index():
    inputs = [("left", [Record((0, 0, None, b"1", -1)),
                        Record((0, 1, b"k", b"x", -1, (("content-type", b"text/plain"), ("h", b"v"))))]),
              ("right", [Record((0, 0, None, b"{}", -1))])]
    types = {"left": "", "right": "application/json", "out": "text/plain", "dlq": ""}
    assert window_signals(inputs, ["out", "dlq"], types) == [
        StartFrame(("text/plain", DEFAULT_CONTENT_TYPE), ("left", "right"), ("out", "dlq")),
        InputFrame(b"1", DEFAULT_CONTENT_TYPE, {}, 0),
        InputFrame(b"x", "text/plain", {"h": "v"}, 0),
        InputFrame(b"{}", "application/json", {}, 1),
    ]


def test_output_frames_go_to_the_output_their_result_index_names():
    types = {"a": "application/json", "b": ""}
    frames = [OutputFrame(b"1", "application/json", {}, 1), OutputFrame(b"2", "text/plain", {"x": "y"}, 0),
              OutputFrame(b"3", DEFAULT_CONTENT_TYPE, {}, 1)]
    assert window_outputs(frames, ["a", "b"], types) == [
        ("b", None, b"1", (("content-type", b"application/json"),)),
        ("a", None, b"2", (("x", b"y"), ("content-type", b"text/plain"))),
        ("b", None, b"3", ()),
    ]
    with pytest.raises(Exception, match="resultIndex 2, but the processor has 2 output"):
        window_outputs([OutputFrame(b"", "", {}, 2)], ["a", "b"], types)


def test_without_grpcio_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` raises ImportError

    async def no_type(topic):
        return ""

    with pytest.raises(ImportError, match=r"fluvial\[riff\]"):
        RiffFunction("grpc://127.0.0.1:1", no_type)
    assert "fluvial[riff]" in MISSING_GRPC


# ------------------------------------------------------------------ a riff server in Python


class RiffServer:
    """A riff invoker written with grpcio, in this process: ``behaviour(frames, context)`` gets
    the call's InputFrames (after its StartFrame, kept in ``starts``) and yields OutputFrames."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.starts: list[StartFrame] = []
        self.inputs: list[InputFrame] = []
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(SERVICE, {"Invoke": grpc.stream_stream_rpc_method_handler(
            self._invoke, request_deserializer=decode_input_signal, response_serializer=self._encode)})
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"grpc://127.0.0.1:{self.port}"

    @staticmethod
    def _encode(frame: OutputFrame | bytes) -> bytes:
        return frame if isinstance(frame, bytes) else encode_output_signal(frame)  # bytes: sent as they are

    def _invoke(self, signals, context):
        self.calls += 1
        start = next(signals)
        assert isinstance(start, StartFrame), start
        self.starts.append(start)

        def frames():
            for f in signals:
                self.inputs.append(f)
                yield f

        yield from self.behaviour(frames(), context)

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(None).wait()


def averager(frames, context):
    """riff's time-averager: the average of the window's numbers, once its input has ended."""
    nums = [float(f.payload) for f in frames]
    if nums:
        yield OutputFrame(json.dumps({"average": sum(nums) / len(nums), "count": len(nums)}).encode(),
                          "application/json", {}, 0)


def router(frames, context):
    """Two inputs, two outputs, crossed: input i goes to output 1 - i, tagged with its argIndex."""
    for f in frames:
        yield OutputFrame(b"%d:%s" % (f.arg_index, f.payload), "", {"from": str(f.arg_index)}, 1 - f.arg_index)


def upper(frames, context):
    for f in frames:
        yield OutputFrame(f.payload.upper(), "text/plain", dict(f.headers), 0)


def fails(frames, context):
    list(frames)
    context.abort(grpc.StatusCode.INTERNAL, "the function blew up")
    yield  # a generator


def garbage(frames, context):
    list(frames)
    yield b"\x0a\x05\x01"  # an OutputSignal that claims 5 bytes and has 1


def bad_index(frames, context):
    for f in frames:
        yield OutputFrame(f.payload, "", {}, 7)


async def test_time_averager_behind_a_riff_invoker(fl, new_topic):
    with RiffServer(averager) as server, trio.fail_after(TIMEOUT):
        nums, avgs = await new_topic(content_type="text/plain"), await new_topic(content_type="application/json")
        async with trio.open_nursery() as n:
            await _start(fl, n, "ravg", processor_spec("", [nums], [avgs], window_count=4, invoker=server.url))
            await _produce(fl, nums, [str(i) for i in range(1, 13)])
            got = await _wait_records(fl, avgs, 3)
            n.cancel_scope.cancel()
        assert [json.loads(r.value) for r in got] == [{"average": a, "count": 4} for a in (2.5, 6.5, 10.5)]
        assert [dict(r.headers) for r in got] == [{"fluvial-processor-window": f"ravg:{i}".encode()} for i in range(3)]
        assert server.calls == 3 and server.starts == [StartFrame(("application/json",), (nums,), (avgs,))] * 3
        assert [(f.payload, f.content_type, f.arg_index) for f in server.inputs] == [
            (str(i).encode(), "text/plain", 0) for i in range(1, 13)]
        st = (await fl.admin.describe_processor("ravg")).status
        assert (st.state, st.windows_done) == ("Stopped", 3)


async def test_arg_index_and_result_index_map_inputs_and_outputs(fl, new_topic):
    with RiffServer(router) as server, trio.fail_after(TIMEOUT):
        a, b, x, y = [await new_topic() for _ in range(4)]
        await _produce(fl, a, [b"a1", b"a2"])
        await _produce(fl, b, [b"b1"])
        async with trio.open_nursery() as n:
            await _start(fl, n, "route", processor_spec("", [a, b], [x, y], window_count=3, invoker=server.url))
            got_y = await _wait_records(fl, y, 2)
            got_x = await _wait_records(fl, x, 1)
            n.cancel_scope.cancel()
        assert [r.value for r in got_y] == [b"0:a1", b"0:a2"]
        assert [(r.value, dict(r.headers)["from"]) for r in got_x] == [(b"1:b1", b"1")]
        assert server.starts == [StartFrame((DEFAULT_CONTENT_TYPE,) * 2, (a, b), (x, y))]


async def test_record_headers_and_content_types_cross_the_invoker(fl, new_topic):
    with RiffServer(upper) as server, trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic()
        async with fl.producer(src, linger=0) as p:
            await (await p.send(b"hello", headers={"content-type": "text/plain", "trace": "t1"}))
        async with trio.open_nursery() as n:
            await _start(fl, n, "up", processor_spec("", [src], [dst], window_count=1, invoker=server.url))
            got = await _wait_records(fl, dst, 1)
            n.cancel_scope.cancel()
        assert server.inputs == [InputFrame(b"hello", "text/plain", {"trace": "t1"}, 0)]
        assert got[0].value == b"HELLO"
        assert dict(got[0].headers) == {"trace": b"t1", "content-type": b"text/plain",
                                        "fluvial-processor-window": b"up:0"}


async def test_a_call_to_a_riff_processor_is_one_invoke_call(fl, new_topic):
    """``fl.call`` on a processor whose function sits behind a riff invoker: the call's records
    are one Invoke call, half-closed at the call's EOS, and its outputs come back to the caller."""
    with RiffServer(upper) as server, trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic()
        async with trio.open_nursery() as n:
            await _start(fl, n, "rcall", processor_spec("", [src], [dst], window_count=1, invoker=server.url))
            async with fl.call("rcall") as (sink, source):
                for v in (b"one", b"two", b"three"):
                    await sink.send(v)
                await sink.aclose()
                got = [r async for r in source]
            n.cancel_scope.cancel()
        assert [r.value for r in got] == [b"ONE", b"TWO", b"THREE"]
        assert server.calls == 1 and [f.payload for f in server.inputs] == [b"one", b"two", b"three"]
        assert await _read(fl, dst, 0) == []  # a call's outputs go to its reply only


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, match", [("raises", "INTERNAL: the function blew up"),
                                         ("bad-index", "resultIndex 7, but the processor has 1 output"),
                                         ("garbage", "OutputSignal: field 1 claims 5 bytes, 1 left"),
                                         ("down", "UNAVAILABLE")])
async def test_a_failing_invoker_is_retried_then_the_processor_fails(fl, new_topic, case, match):
    behaviour = {"raises": fails, "bad-index": bad_index, "garbage": garbage, "down": upper}[case]
    with RiffServer(behaviour) as server, trio.fail_after(TIMEOUT):
        url = f"grpc://127.0.0.1:{_closed_port()}" if case == "down" else server.url
        src, dst = await new_topic(), await new_topic()
        async with trio.open_nursery() as n:
            done, result = await _start(fl, n, "broken", processor_spec("", [src], [dst], window_count=1,
                                                                       invoker=url, max_failures=3))
            await _produce(fl, src, [b"x"])
            await done.wait()
        st = (await fl.admin.describe_processor("broken")).status
        assert st.state == "Failed" and "InvokerError" in st.last_error and match in st.last_error
        assert "failed 3 times" in str(result["error"]) and match in str(result["error"])
        assert server.calls == (0 if case == "down" else 3)
        assert await _read(fl, dst, 0) == []


async def test_a_failing_invoker_window_goes_to_the_dead_letter_topic(fl, new_topic):
    with RiffServer(fails) as server, trio.fail_after(TIMEOUT):
        src, dst, dlq = await new_topic(), await new_topic(), await new_topic()
        async with trio.open_nursery() as n:
            await _start(fl, n, "dl", processor_spec("", [src], [dst], window_count=1, invoker=server.url,
                                                     max_failures=1, dead_letter=dlq))
            await _produce(fl, src, [b"p"])
            got = await _wait_records(fl, dlq, 1)
            n.cancel_scope.cancel()
        assert got[0].value == b"p" and b"INTERNAL" in dict(got[0].headers)["fluvial-processor-error"]


async def test_a_cancelled_window_cancels_its_call(fl, new_topic):
    """The runtime stopped while the invoker holds the window's call: the call is cancelled (the
    invoker sees it) and the runtime stops at once, without waiting for the call's deadline."""
    entered, cancelled = threading.Event(), threading.Event()

    def stuck(frames, context):
        list(frames)
        entered.set()
        while context.is_active():
            cancelled.wait(0.05)
        cancelled.set()
        return iter(())

    with RiffServer(stuck) as server, trio.fail_after(TIMEOUT):
        src, dst = await new_topic(), await new_topic()
        async with trio.open_nursery() as n:
            await _start(fl, n, "stuck", processor_spec("", [src], [dst], window_count=1, invoker=server.url))
            await _produce(fl, src, [b"x"])
            assert await trio.to_thread.run_sync(entered.wait, TIMEOUT)
            n.cancel_scope.cancel()
        assert await trio.to_thread.run_sync(cancelled.wait, 10), "the invoker's call was not cancelled"


# ------------------------------------------------------------ riff's Node.js invoker, from npm

RIFF_NODE_INVOKER = "@projectriff/node-function-invoker@0.3.0"  # its latest (and only) release
NODE_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "riff-node"  # in .gitignore

# Runs riff's own server.js, with the gRPC server it creates bound to 127.0.0.1 (server.js binds
# 0.0.0.0) on the port GRPC_PORT names (0: any), and prints the port it got.
LAUNCHER = r"""
const path = require("path");
const dir = process.env.RIFF_INVOKER_DIR;
const grpc = require(require.resolve("@grpc/grpc-js", { paths: [dir] }));
const bind = grpc.Server.prototype.bindAsync;
grpc.Server.prototype.bindAsync = function (address, credentials, callback) {
    return bind.call(this, address.replace(/^0\.0\.0\.0:/, "127.0.0.1:"), credentials, (err, port) => {
        if (!err) console.log(`riff invoker port ${port}`);
        callback(err, port);
    });
};
require(path.join(dir, "server.js"));
"""

# riff functions, as riff's Node.js invoker serves them unchanged
NODE_FUNCTIONS = {
    # request-reply, promoted to streaming by the invoker
    "square.js": "module.exports = (x) => x ** 2;\n",
    # streaming: riff's time-averager, the average of a window's numbers once its input ends
    "mean.js": """
module.exports = (inputs, outputs) => {
    let sum = 0, count = 0;
    const numbers = inputs.$order[0], averages = outputs.$order[0];
    numbers.on("data", (message) => { sum += message.payload; count += 1; });
    numbers.on("end", () => {
        if (count) averages.write({ average: sum / count, count });
        averages.end();
    });
};
module.exports.$interactionModel = "node-streams";
""",
    "throws.js": "module.exports = (x) => { throw new Error(`no ${x}`); };\n",
}


@pytest.fixture(scope="session")
def riff_node_invoker():
    """(node, the installed invoker's directory): riff's Node.js invoker from npm, installed once
    into tests/.cache; skipped, with the reason printed, without node, npm or the package."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        reason = "riff's Node.js invoker needs node and npm, not found on PATH"
        print(reason)
        pytest.skip(reason)
    target = NODE_CACHE / "node_modules" / "@projectriff" / "node-function-invoker"
    if not (target / "server.js").exists():
        NODE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="riff-node-", dir=NODE_CACHE.parent))
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(tmp), RIFF_NODE_INVOKER],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = f"npm install {RIFF_NODE_INVOKER} failed: {r.stderr.strip()[-500:]}"
            print(reason)
            pytest.skip(reason)
        try:
            tmp.rename(NODE_CACHE)
        except OSError:  # another run installed it first
            shutil.rmtree(tmp, ignore_errors=True)
    return node, target


@contextlib.asynccontextmanager
async def node_invoker(riff_node_invoker, tmp_path, function: str):
    """riff's Node.js invoker serving ``NODE_FUNCTIONS[function]``; yields its grpc:// URL."""
    node, invoker_dir = riff_node_invoker
    (tmp_path / function).write_text(NODE_FUNCTIONS[function])
    (tmp_path / "launch.js").write_text(LAUNCHER)
    log_path = tmp_path / f"{function}.log"
    env = {**os.environ, "FUNCTION_URI": str(tmp_path / function), "GRPC_PORT": "0",
           "RIFF_INVOKER_DIR": str(invoker_dir)}
    with open(log_path, "wb") as log:
        proc = await trio.lowlevel.open_process([node, str(tmp_path / "launch.js")], stdout=log,
                                                stderr=subprocess.STDOUT, env=env)
    try:
        with trio.fail_after(30):
            while not re.search(r"riff invoker port (\d+)[\s\S]*Ready to process signals", log_path.read_text()):
                if proc.poll() is not None:
                    raise RuntimeError(f"riff's invoker exited {proc.returncode}: {log_path.read_text()}")
                await trio.sleep(0.05)
        port = re.search(r"riff invoker port (\d+)", log_path.read_text()).group(1)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.poll() is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("function, window, expected", [
    ("square.js", 2, [1, 4, 9, 16, 25, 36, 49, 64]),  # request-reply: one output per record
    ("mean.js", 4, [{"average": 2.5, "count": 4}, {"average": 6.5, "count": 4}]),  # once per window
])
async def test_riffs_node_invoker_runs_a_function_per_window(fl, new_topic, riff_node_invoker, tmp_path,
                                                             function, window, expected):
    with trio.fail_after(TIMEOUT):
        async with node_invoker(riff_node_invoker, tmp_path, function) as url:
            nums = await new_topic(content_type="application/json")
            outs = await new_topic(content_type="application/json")
            async with trio.open_nursery() as n:
                await _start(fl, n, "node", processor_spec(function, [nums], [outs], window_count=window, invoker=url))
                await _produce(fl, nums, [str(i) for i in range(1, 9)])
                got = await _wait_records(fl, outs, len(expected))
                n.cancel_scope.cancel()
        assert [json.loads(r.value) for r in got] == expected
        per_window = len(expected) * window // 8
        assert [dict(r.headers)["fluvial-processor-window"] for r in got] == [
            f"node:{i // per_window}".encode() for i in range(len(expected))]


async def test_a_function_that_throws_in_riffs_node_invoker_fails_the_processor(fl, new_topic, riff_node_invoker,
                                                                                tmp_path):
    with trio.fail_after(TIMEOUT):
        async with node_invoker(riff_node_invoker, tmp_path, "throws.js") as url:
            src, dst = await new_topic(content_type="text/plain"), await new_topic()
            async with trio.open_nursery() as n:
                done, result = await _start(fl, n, "throws", processor_spec("throws.js", [src], [dst], window_count=1,
                                                                            invoker=url, max_failures=2))
                await _produce(fl, src, ["x"])
                await done.wait()
        st = (await fl.admin.describe_processor("throws")).status
        assert st.state == "Failed" and f"riff invoker {url}: UNKNOWN" in st.last_error and "no x" in st.last_error
        assert "failed 2 times" in str(result["error"])
        assert await _read(fl, dst, 0) == []
