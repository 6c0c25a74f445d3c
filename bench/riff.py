"""Processors behind riff invokers (issue 17, ``--invoker grpc://HOST:PORT``): records/s through an
identity processor whose function runs behind a riff invoker, next to the same processor with the
function in-process (its peer), in one run, rounds interleaved.

Starts a local 1-SPU cluster (``fluvial cluster start --no-tls``, fsync before every
acknowledgement) in a temporary FLUVIAL_HOME; each processor runs as ``fluvial run processor``
in its own process. The variants:

* ``python``: ``def identity(value): return value``, in the runtime's process (no RPC);
* ``grpcio``: a riff invoker written with grpcio (this script with ``--serve``), its own process;
* ``node``: riff's Node.js invoker (``@projectriff/node-function-invoker`` from npm, installed
  into tests/.cache as the tests do) serving ``module.exports = (x) => x``; skipped without node.

Per variant, records/s through windows of ``--window-count`` records (one Invoke call each: the
frames' cost; not for node, see ``windows``), of 16 records, and of one record (one call per
record: the call's own cost), counted from the first output record to the last, with the ratio
to the in-process function at the same window size.

Usage: python bench/riff.py [--records 20000] [--window-count 1000] [--small 2000] [--single 300]
       [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path

import trio

import fluvial

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test harness
from harness.processes import ProcessCluster, temporary_home
from processors import Runtime, drain_rate, load, note  # bench/processors.py

from fluvial.processor.spec import processor_spec
from fluvial.processor.supervisor import stop_process
from fluvial.protocol.riff_rpc import SERVICE, OutputFrame, StartFrame, decode_input_signal, encode_output_signal

NODE_PACKAGE = "@projectriff/node-function-invoker@0.3.0"
NODE_CACHE = ROOT / "tests" / ".cache" / "riff-node"
NODE_MAX_WINDOW = 16
NODE_LAUNCHER = ROOT / "tests" / "processor" / "test_riff.py"  # LAUNCHER lives there


def serve_identity() -> None:
    """``--serve``: a grpcio riff invoker whose function is the identity; prints its port."""
    import grpc

    def invoke(signals, context):
        for f in signals:
            if not isinstance(f, StartFrame):
                yield OutputFrame(f.payload, f.content_type, {}, 0)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Invoke": grpc.stream_stream_rpc_method_handler(invoke, request_deserializer=decode_input_signal,
                                                        response_serializer=encode_output_signal)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"riff invoker port {port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:  # stop_process's SIGINT
        server.stop(None)


def start_invoker(cmd: list[str], env: dict | None = None, ready: str = "riff invoker port ") -> tuple[
        subprocess.Popen, int]:
    """Starts an invoker that prints ``riff invoker port N``; returns once it printed ``ready``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    port = None
    for line in proc.stdout:  # ends when the process does
        if line.startswith("riff invoker port "):
            port = int(line.split()[-1])
        if port and ready in line:
            break
    if port is None:
        stop_process(proc)
        raise RuntimeError(f"the invoker {cmd} did not start")
    # keep reading its output, so that it never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, port


def node_invoker(tmp: str) -> tuple[list[str], dict] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        note("node/npm not found: no node variant")
        return None
    target = NODE_CACHE / "node_modules" / "@projectriff" / "node-function-invoker"
    if not (target / "server.js").exists():
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_CACHE), NODE_PACKAGE],
                           capture_output=True, text=True)
        if r.returncode:
            note(f"npm install failed: no node variant ({r.stderr.strip()[-200:]})")
            return None
    sys.path.insert(0, str(NODE_LAUNCHER.parent))
    from test_riff import LAUNCHER

    Path(tmp, "launch.js").write_text(LAUNCHER)
    Path(tmp, "identity.js").write_text("module.exports = (x) => x;\n")
    env = {**os.environ, "FUNCTION_URI": str(Path(tmp, "identity.js")), "GRPC_PORT": "0",
           "RIFF_INVOKER_DIR": str(target)}
    return [node, str(Path(tmp, "launch.js"))], env


async def measure(fl, endpoint: str, name: str, spec_args: dict, records: int, window: int) -> float:
    records -= records % window  # whole windows only: a count window waits for its last record
    src, dst = f"{name}-in", f"{name}-out"
    for t in (src, dst):
        await fl.admin.create_topic(t, 1, 1)
    await load(fl, src, records, 100)
    await fl.admin.create_processor(name, processor_spec(inputs=[src], outputs=[dst], window_count=window,
                                                         **spec_args))
    rt = Runtime(endpoint, name)
    try:
        with trio.fail_after(300):
            return await drain_rate(fl, dst, records)
    finally:
        rt.stop()


async def run(cluster: ProcessCluster, args, variants: dict[str, dict]) -> dict[str, dict[int, list[float]]]:
    """records/s per variant and window size (best of the rounds)."""
    host, port = cluster.sc_address
    endpoint = f"{host}:{port}"
    res: dict[str, dict[int, list[float]]] = {v: {} for v in variants}
    async with fluvial.connect(endpoint=endpoint) as fl:
        for r in range(args.rounds):
            for v, spec_args in variants.items():
                for window, records in windows(v, args):
                    note(f"round {r + 1}: {v}, windows of {window}")
                    rate = await measure(fl, endpoint, f"{v}-{window}-{r}", spec_args, records, window)
                    res[v].setdefault(window, []).append(rate)
    return res


def windows(variant: str, args) -> list[tuple[int, int]]:
    """(window size, records) to measure. riff's Node.js invoker 0.3.0 drops the records it still
    buffers when a call is half-closed (more than 16 in flight: docs/processors.md), so it gets no
    large windows."""
    sizes = [(NODE_MAX_WINDOW, args.small), (1, args.single)]
    return sizes if variant == "node" else [(args.window_count, args.records), *sizes]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--window-count", type=int, default=1000)
    parser.add_argument("--small", type=int, default=2000, help="records through windows of 16")
    parser.add_argument("--single", type=int, default=300, help="records through count-1 windows")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_identity()
        return 0
    procs = []
    with tempfile.TemporaryDirectory() as tmp, temporary_home("fluvial-bench-riff-") as home:
        Path(tmp, "benchfns.py").write_text("def identity(value):\n    return value\n")
        variants = {"python": {"function": "benchfns:identity", "path": tmp}}
        try:
            proc, port = start_invoker([sys.executable, __file__, "--serve"])
            procs.append(proc)
            variants["grpcio"] = {"function": "", "invoker": f"grpc://127.0.0.1:{port}"}
            node = node_invoker(tmp)
            if node:
                proc, port = start_invoker(*node, ready="Ready to process signals")
                procs.append(proc)
                variants["node"] = {"function": "identity.js", "invoker": f"grpc://127.0.0.1:{port}"}
            with ProcessCluster(home, spus=1, tls=False) as cluster:
                cluster.start()
                r = trio.run(run, cluster, args, variants)
        finally:
            for p in procs:
                stop_process(p)
    print(f"identity processor, 100 B values, 1 SPU, fsync per ack, best of {args.rounds} interleaved rounds; "
          f"records/s (windows/s), and the ratio to the in-process Python function")
    base = {w: max(xs) for w, xs in r["python"].items()}
    for v in variants:
        cells = [f"windows of {w}: {max(xs):,.0f} rec/s ({max(xs) / base[w]:.2f}x)" for w, xs in r[v].items()]
        print(f"{v:>7}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
