"""TLS on the byte path: plaintext TCP vs trio.SSLStream vs fluvial's TlsStream, in one run.

A stream-level A/B, below the protocol: one trio process, a loopback TCP connection per case, the
server end wrapped as ``serve_tcp`` wraps it and the client end as ``open_connection`` does. Cases:

* ``bulk``: the client writes ``--megabytes`` MiB in frames of ``--frame`` bytes with ``send_all``
  (a producer's batches, a fetch response), the server reads them as fluvial's readers do: a
  ``FrameDecoder`` fed with ``receive_some(decoder.read_size(256 KiB))`` (256 KiB is what
  ``ServerLimits.receive_bytes`` / the multiplexer ask for at least); MB/s.
* ``ping``: ``--pings`` round trips of a 200-byte frame, each answered by a 200-byte frame (a
  produce and its ack); p50 and p99 in microseconds.

The rounds are interleaved (``--rounds``), medians are printed, with the ratio to plaintext. The
certificates are minted in a temporary directory with ``fluvial.tls_certs``.

Usage: python bench/tls_stream.py [--rounds 3] [--megabytes 256] [--frame 1048576] [--pings 3000]
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from fluvial.net.tls import TlsStream, client_ssl_context, server_ssl_context
from fluvial.protocol.frame import FrameDecoder, frame
from fluvial.tls_certs import CA

RECEIVE_BYTES = 256 * 1024
Wrap = Callable[[trio.SocketStream, bool], trio.abc.Stream]


def contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = CA()
    ca_file, _ = ca.write(directory, "ca")
    cert, key = ca.issue_server_cert("localhost", "127.0.0.1").write(directory, "server")
    return server_ssl_context(cert, key), client_ssl_context(ca_file)


def wrappers(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> dict[str, Wrap | None]:
    def trio_ssl(tcp: trio.SocketStream, server: bool) -> trio.abc.Stream:
        if server:
            return trio.SSLStream(tcp, server_ctx, server_side=True)
        return trio.SSLStream(tcp, client_ctx, server_hostname="127.0.0.1")

    def fluvial_tls(tcp: trio.SocketStream, server: bool) -> trio.abc.Stream:
        if server:
            return TlsStream(tcp, server_ctx, server_side=True)
        return TlsStream(tcp, client_ctx, server_hostname="127.0.0.1")

    return {"plaintext": None, "trio.SSLStream": trio_ssl, "fluvial TlsStream": fluvial_tls}


async def pair(wrap: Wrap | None) -> tuple[trio.abc.Stream, trio.abc.Stream, trio.SocketListener]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    client_tcp = await trio.open_tcp_stream("127.0.0.1", port)
    server_tcp = await listener.accept()
    if wrap is None:
        return server_tcp, client_tcp, listener
    server, client = wrap(server_tcp, True), wrap(client_tcp, False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    return server, client, listener


async def read_exactly(stream: trio.abc.Stream, n: int) -> None:
    got = 0
    while got < n:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            raise RuntimeError(f"EOF after {got} of {n} bytes")
        got += len(data)


async def read_frames(stream: trio.abc.Stream, n: int) -> None:
    decoder, got = FrameDecoder(), 0
    owned = isinstance(stream, TlsStream)  # as the server's read loop and the multiplexer
    while got < n:
        data = await stream.receive_some(decoder.read_size(RECEIVE_BYTES))
        if not data:
            raise RuntimeError(f"EOF after {got} of {n} frames")
        got += len(decoder.feed(data, owned))


async def bulk(wrap: Wrap | None, megabytes: int, frame_bytes: int) -> float:
    server, client, listener = await pair(wrap)
    payload = frame(b"x" * (frame_bytes - 4))
    count = megabytes * 1024 * 1024 // frame_bytes
    total = count * frame_bytes
    try:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_frames, server, count)
            for _ in range(count):
                await client.send_all(payload)
        return total / (time.perf_counter() - start) / 1e6
    finally:
        for s in (server, client, listener):
            await trio.aclose_forcefully(s)


async def ping(wrap: Wrap | None, n: int) -> tuple[float, float]:
    server, client, listener = await pair(wrap)
    message = b"p" * 200
    rtts: list[float] = []

    async def echo() -> None:
        for _ in range(n):
            await read_exactly(server, len(message))
            await server.send_all(message)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            for _ in range(n):
                t = time.perf_counter_ns()
                await client.send_all(message)
                await read_exactly(client, len(message))
                rtts.append((time.perf_counter_ns() - t) / 1000)
    finally:
        for s in (server, client, listener):
            await trio.aclose_forcefully(s)
    rtts.sort()
    return rtts[len(rtts) // 2], rtts[int(len(rtts) * 0.99)]


async def main_async(args) -> None:
    with tempfile.TemporaryDirectory(prefix="fluvial-tls-bench-") as tmp:
        kinds = wrappers(*contexts(Path(tmp)))
    results: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    for rnd in range(args.rounds):
        for name, wrap in kinds.items():
            r = results[name]
            for frame_bytes in args.frame:
                r.setdefault(f"bulk {frame_bytes // 1024} KiB frames MB/s", []).append(
                    await bulk(wrap, args.megabytes, frame_bytes))
            p50, p99 = await ping(wrap, args.pings)
            r.setdefault("ping p50 us", []).append(p50)
            r.setdefault("ping p99 us", []).append(p99)
        print(f"round {rnd + 1}/{args.rounds} done", flush=True)
    metrics = list(results["plaintext"])
    print()
    print("| stream | " + " | ".join(metrics) + " |")
    print("| --- |" + " ---: |" * len(metrics))
    base = {m: statistics.median(results["plaintext"][m]) for m in metrics}
    for name, r in results.items():
        cells = []
        for m in metrics:
            med = statistics.median(r[m])
            cells.append(f"{med:,.0f}" + ("" if name == "plaintext" else f" ({med / base[m]:.2f}x)"))
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--megabytes", type=int, default=256, help="MiB per bulk case")
    ap.add_argument("--frame", type=int, nargs="+", default=[1024 * 1024, 16 * 1024])
    ap.add_argument("--pings", type=int, default=3000)
    trio.run(main_async, ap.parse_args())


if __name__ == "__main__":
    main()
