"""fluvial.malloc: a server process keeps the memory it frees, so the large short-lived buffers of
a produce request (a recv buffer shrunk to what arrived, the joined payload, the record set cut
out of it) stop costing a page fault per 4 KiB. Each case runs in a process of its own (malloc
settings are process-wide); faults are counted with /proc/self/stat, not timed."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="malloc settings are applied on Linux with glibc only")

# The request path of a server, in a loop: what it costs in minor page faults per MB.
WORKLOAD = textwrap.dedent("""
    import socket

    def faults():
        return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])

    def faults_per_mb():
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        payload = b"x" * (1 << 20)

        def request():
            a.sendall(payload)
            parts, got = [], 0
            while got < len(payload):
                data = b.recv(4 << 20)  # as the server's reader asks for a large frame's rest
                parts.append(data)
                got += len(data)
            frame = b"".join(parts)
            return bytes(memoryview(frame)[100:])  # the record set cut out of the request

        for _ in range(5):
            request()
        before = faults()
        for _ in range(50):
            request()
        return (faults() - before) / 50
""")


def run(body: str) -> float:
    out = subprocess.run([sys.executable, "-c", WORKLOAD + textwrap.dedent(body)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


def test_kept_freed_memory_stops_the_page_faults_of_large_buffers():
    default = run("print(faults_per_mb())")
    if default < 64:
        pytest.skip(f"this C library reuses the buffers by itself ({default} faults per MB)")
    kept = run("""
        from fluvial.malloc import keep_freed_memory
        assert keep_freed_memory()
        print(faults_per_mb())
    """)
    assert kept < 16, (default, kept)


def test_a_server_process_keeps_freed_memory():
    """``fluvial run sc|spu|processors`` serve through ``_run_until_signal``, which applies it."""
    kept = run("""
        import os, signal, trio
        from fluvial.cli.run import _run_until_signal

        result = []

        async def serve(task_status):
            result.append(faults_per_mb())
            task_status.started({})
            os.kill(os.getpid(), signal.SIGTERM)

        trio.run(_run_until_signal, serve, None, lambda ports: ports)
        print(result[0])
    """)
    assert kept < 16
