"""fluvial against Redis Streams and NATS JetStream: the same workloads, one machine, one run.

What it starts, each on 127.0.0.1 with its data in a temporary directory, and stops by PID:

* fluvial: ``fluvial cluster start --spus 3 --sc-port 0 --no-tls`` (an SC and three SPUs), with
  one topic of one partition per workload, at replication 1 and at replication 3. Plaintext,
  because Redis and NATS run plaintext here. Unless ``--no-tls``, a second cluster started with
  TLS (what ``fluvial cluster start`` gives a new user; the client uses the ``local`` profile it
  writes, mutual TLS) gives the rows "fluvial TLS RF=1"; both clusters run side by side and the
  plaintext and TLS workloads alternate within each run, so their ratio is measured under the
  same load.
* Redis 7 (``redis-server``): ``appendonly yes`` with ``appendfsync always``, then a fresh server
  with ``appendfsync everysec``; one stream per workload.
* NATS JetStream (``nats-server -js``): file storage, one stream of one subject per workload.

Nothing is installed by the bench: a missing server binary or Python client is named, with the
command that installs it, and that system is skipped.

What it measures, ``--runs`` times each (median and min-max reported):

* produce ``--small`` records of 100 B and ``--large`` records of 1 KiB (1,024 B); the clock
  stops when every record has been acknowledged. Each client is used the way its documentation
  suggests for throughput: fluvial, a ``Producer`` (``batch_size=64 KiB``, ``read_committed``)
  fed with ``send_many`` (1,000 records a call), then ``flush()``; Redis, redis-py (hiredis) pipelines of 1,000 ``XADD``; NATS, nats-py
  ``publish_async`` for every record, then ``publish_async_completed()``.
* consume everything back, from the first record: fluvial, a ``Consumer`` with
  ``continuous=False`` read by ``receive_many``; Redis, ``XRANGE`` of 1,000 entries at a time;
  NATS, a push consumer without acks (``AckPolicy.NONE``) delivering to a callback.
* send -> receive latency, ``--rate`` records/s for ``--latency-seconds``: one producer and one
  live reader in the bench process, each value carrying its send time (``perf_counter_ns``);
  p50, p99 and max per run. fluvial: producer and consumer both ``read_committed`` (the reader
  only sees acknowledged, durable records); Redis: ``XADD`` in one thread, ``XREAD BLOCK`` in
  another; NATS: ``publish_async`` and a push consumer (``DeliverPolicy.NEW``).
* the machine's limits, before and after the systems: loopback TCP MB/s (one socket, 1 MiB sends), sequential
  write + fsync MB/s (256 MiB in 1 MiB writes, one fsync) and fdatasync latency (100 B appended,
  then fdatasync, 500 times) in the directory the servers use.

What an acknowledgement means (see ``ACKS``): fluvial fdatasyncs before it acknowledges (RF=3:
on all three replicas); Redis ``always`` fsyncs the AOF before it replies, ``everysec`` does not
(it fsyncs once a second in the background); NATS 2.9 writes the message to its file store
without an fsync (it fsyncs every 2 minutes; per-write sync does not exist before 2.10).

Writes ``bench/RESULTS.md`` (``--results``): the tables, the machine, the date and the versions.
Anything in an existing RESULTS.md below the line ``<!-- notes: kept by compare.py -->`` is kept.

Usage: python bench/compare.py [--runs 3] [--small 200000] [--large 50000]
       [--latency-seconds 5] [--rate 1000] [--systems fluvial,redis,nats] [--dir DIR]
       [--no-tls] [--results PATH | --no-results]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from systems import (
    LARGE_BYTES, SMALL_BYTES, command_output, fluvial_consume, fluvial_latency, fluvial_missing,
    fluvial_produce, fluvial_wait_ready, FluvialCluster, machine_limits, nats_consume,
    nats_latency, nats_missing, nats_produce, NatsServer, redis_consume, redis_latency,
    redis_missing, redis_produce, RedisServer, version_of,
)


NOTES_MARKER = "<!-- notes: kept by compare.py -->"
METRICS = ("produce-small", "produce-large", "consume-small", "consume-large",
           "lat-p50", "lat-p99", "lat-max")

# What each system's acknowledgement means on this setup (stated in RESULTS.md).
ACKS = {
    "fluvial RF=1": "after the leader SPU has written and fdatasync'd the batch (group commit)",
    "fluvial RF=3": "after every in-sync replica (all 3 here) has written and fdatasync'd the "
                    "batch (the HW covers it; `read_committed`)",
    "fluvial TLS RF=1": "as fluvial RF=1, over TLS (mutual TLS, the `fluvial cluster start` "
                        "default)",
    "redis always": "after the AOF is written and fsync'd (`appendfsync always`; Redis fsyncs once "
                    "per event-loop turn, before replies)",
    "redis everysec": "after the AOF write() only; fsync once a second in the background (up to "
                      "~1-2 s of acknowledged writes lost on an OS crash or power loss)",
    "nats": "after the message is written to the file store, no fsync (JetStream 2.9 fsyncs every "
            "2 minutes; `sync_interval: always` only exists from 2.10)",
}
FSYNC = {"fluvial RF=1": "yes", "fluvial RF=3": "yes (x3)", "fluvial TLS RF=1": "yes",
         "redis always": "yes",
         "redis everysec": "no", "nats": "no"}


async def fluvial_row(fl, args, rf: int, run: int) -> dict[str, float]:
    """One run of every workload on one cluster at replication ``rf``."""
    small, large = os.urandom(SMALL_BYTES), os.urandom(LARGE_BYTES)
    res: dict[str, float] = {}
    for name, n, value in (("small", args.small, small), ("large", args.large, large)):
        topic = f"bench-rf{rf}-{name}-{run}"
        await fl.admin.create_topic(topic, partitions=1, replication=rf)
        await fluvial_wait_ready(fl, topic, rf)
        gc.collect()
        res[f"produce-{name}"] = n / await fluvial_produce(fl, topic, n, value)
        gc.collect()
        res[f"consume-{name}"] = n / await fluvial_consume(fl, topic, n, len(value))
    topic = f"bench-rf{rf}-latency-{run}"
    await fl.admin.create_topic(topic, partitions=1, replication=rf)
    await fluvial_wait_ready(fl, topic, rf)
    gc.collect()
    res.update(await fluvial_latency(fl, topic, args.latency_seconds, args.rate))
    for name in ("small", "large", "latency"):  # keep the disk from filling up
        await fl.admin.delete_topic(f"bench-rf{rf}-{name}-{run}")
    return res


async def fluvial_runs(rows: list[tuple[str, dict, int]], args) -> dict[str, list[dict]]:
    """``rows``: (label, connect arguments, replication); the rows alternate within each run."""
    import fluvial
    from contextlib import AsyncExitStack

    out: dict[str, list[dict]] = {label: [] for label, _, _ in rows}
    async with AsyncExitStack() as stack:
        clients: dict[str, object] = {}
        for _, connect_args, _ in rows:
            key = json.dumps(connect_args, sort_keys=True)
            if key not in clients:
                clients[key] = await stack.enter_async_context(fluvial.connect(**connect_args))
        for run in range(args.runs):
            for label, connect_args, rf in rows:
                fl = clients[json.dumps(connect_args, sort_keys=True)]
                res = await fluvial_row(fl, args, rf, run)
                out[label].append(res)
                progress(label, run, res)
    return out


def run_fluvial(base: Path, args) -> dict[str, list[dict]]:
    clusters = [FluvialCluster(base / "fluvial", spus=3)]
    try:
        rows = [(f"fluvial RF={rf}", clusters[0].connect_args, rf) for rf in (1, 3)]
        if args.tls:
            clusters.append(FluvialCluster(base / "fluvial-tls", spus=3, tls=True))
            rows.append(("fluvial TLS RF=1", clusters[1].connect_args, 1))
        return trio.run(fluvial_runs, rows, args)
    finally:
        for cluster in clusters:
            cluster.stop()


def run_redis(base: Path, args, appendfsync: str) -> dict[str, list[dict]]:
    label = f"redis {appendfsync}"
    server = RedisServer(base / f"redis-{appendfsync}", appendfsync)
    out = []
    try:
        r = server.client()
        small, large = os.urandom(SMALL_BYTES), os.urandom(LARGE_BYTES)
        for run in range(args.runs):
            res: dict[str, float] = {}
            for name, n, value in (("small", args.small, small), ("large", args.large, large)):
                stream = f"bench-{name}-{run}"
                gc.collect()
                res[f"produce-{name}"] = n / redis_produce(r, stream, n, value)
                gc.collect()
                res[f"consume-{name}"] = n / redis_consume(r, stream, n, len(value))
            gc.collect()
            res.update(redis_latency(server, f"bench-latency-{run}", args.latency_seconds, args.rate))
            out.append(res)
            progress(label, run, res)
            r.delete(f"bench-small-{run}", f"bench-large-{run}", f"bench-latency-{run}")
    finally:
        server.stop()
    return {label: out}


async def nats_runs(port: int, args) -> list[dict]:
    import nats
    from nats.js.api import StorageType

    out = []
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        small, large = os.urandom(SMALL_BYTES), os.urandom(LARGE_BYTES)
        for run in range(args.runs):
            res: dict[str, float] = {}
            for name, n, value in (("small", args.small, small), ("large", args.large, large)):
                stream = f"bench-{name}-{run}"
                await js.add_stream(name=stream, subjects=[stream], storage=StorageType.FILE)
                gc.collect()
                res[f"produce-{name}"] = n / await nats_produce(js, stream, n, value)
                gc.collect()
                res[f"consume-{name}"] = n / await nats_consume(js, stream, n, len(value))
                await js.delete_stream(stream)
            stream = f"bench-latency-{run}"
            await js.add_stream(name=stream, subjects=[stream], storage=StorageType.FILE)
            gc.collect()
            res.update(await nats_latency(js, stream, args.latency_seconds, args.rate))
            await js.delete_stream(stream)
            out.append(res)
            progress("nats", run, res)
    finally:
        await nc.close()
    return out


def run_nats(base: Path, args) -> dict[str, list[dict]]:
    server = NatsServer(base / "nats")
    try:
        return {"nats": asyncio.run(nats_runs(server.port, args))}
    finally:
        server.stop()


# ------------------------------------------------------------------------------------ reports


def progress(label: str, run: int, res: dict[str, float]) -> None:
    print(f"  {label:<16} run {run + 1}: produce {res['produce-small']:>9,.0f} /s (100 B) "
          f"{res['produce-large']:>8,.0f} /s (1 KiB); consume {res['consume-small']:>9,.0f} /s "
          f"{res['consume-large']:>8,.0f} /s; latency p50 {res['lat-p50']:,.0f} us "
          f"p99 {res['lat-p99']:,.0f} us", flush=True)


def summary(runs: list[dict]) -> dict[str, tuple[float, float, float]]:
    """metric -> (median, min, max) over the runs."""
    return {m: (statistics.median(r[m] for r in runs), min(r[m] for r in runs),
                max(r[m] for r in runs)) for m in METRICS}


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def cell(stat: tuple[float, float, float], scale: float = 1.0, digits: int = 0) -> str:
    med, lo, hi = (v * scale for v in stat)
    return f"{fmt(med, digits)} ({fmt(lo, digits)}-{fmt(hi, digits)})"


def machine_info(directory: Path) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    fs = command_output("df", "--output=fstype", str(directory)).splitlines()[-1:] or ["?"]
    return [f"CPU: {cpu}, {os.cpu_count()} logical cores, {mem}",
            f"OS: {platform.system()} {platform.release()} ({platform.machine()})",
            f"Data directory file system: {fs[0]}"]


def versions() -> list[str]:
    import fluvial

    rev = command_output("git", "-C", str(Path(__file__).resolve().parent), "describe", "--always",
                         "--dirty")
    out = [f"Python {platform.python_version()}, trio {version_of('trio')}",
           f"fluvial {fluvial.__version__}" + (f" (git {rev})" if rev else "")]
    if shutil.which("redis-server"):
        out.append(f"{command_output('redis-server', '--version')}; redis-py {version_of('redis')}, "
                   f"hiredis {version_of('hiredis')}")
    if shutil.which("nats-server"):
        out.append(f"nats-server {command_output('nats-server', '--version')}; nats-py "
                   f"{version_of('nats-py')}")
    return out


def render(args, results: dict[str, list[dict]], limits: dict[str, dict[str, float]],
           skipped: list[str], started: datetime.datetime, elapsed: float,
           load: tuple[tuple, tuple], directory: Path) -> str:
    stats = {name: summary(runs) for name, runs in results.items()}
    small_mb, large_mb = SMALL_BYTES / 1e6, LARGE_BYTES / 1e6
    lines = [
        "# fluvial vs Redis Streams vs NATS JetStream",
        "",
        f"Written by `python bench/compare.py` on {started:%Y-%m-%d %H:%M} UTC; the whole run took "
        f"{elapsed / 60:.1f} minutes. Every figure is the median of {args.runs} runs, with the "
        f"minimum and maximum in brackets. MB = 10^6 bytes of record values (keys, ids and "
        f"framing are not counted); 1 KiB = 1,024 B.",
        "",
        "## Machine and versions",
        "",
        *[f"- {line}" for line in machine_info(directory)],
        f"- Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load[0])}; after: "
        f"{', '.join(f'{x:.2f}' for x in load[1])} (anything else running on the machine shows "
        f"up here)",
        *[f"- {line}" for line in versions()],
        "",
        "Everything runs on this one machine: the servers, and the bench process that drives the "
        "client. fluvial is a local cluster of an SC and 3 SPUs (separate processes), each "
        "workload a topic of 1 partition; RF=3 keeps its three replicas on the same disk. All "
        "connections are plaintext TCP over 127.0.0.1 (fluvial `--no-tls`), except the \"fluvial "
        "TLS\" rows: a second cluster started with TLS (mutual TLS, as `fluvial cluster start` "
        "sets it up), alternating with the plaintext rows in every run.",
        "",
        "## Machine limits (same run, measured before and after the systems)",
        "",
        "Loopback TCP: one connection, 1 MiB sends, for 1 s. Sequential write + fsync: 256 MiB in "
        "1 MiB writes, then one fsync. fdatasync: append 100 B, fdatasync, 500 times back to "
        "back; in the directory the servers use.",
        "",
        "| when | loopback TCP | sequential write + fsync | fdatasync p50 | fdatasync p99 | "
        "fdatasync max |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {when} | {fmt(lim['loopback_mb_s'])} MB/s | {fmt(lim['write_fsync_mb_s'])} MB/s | "
          f"{fmt(lim['fdatasync_p50_us'])} us | {fmt(lim['fdatasync_p99_us'])} us | "
          f"{fmt(lim['fdatasync_max_us'])} us |" for when, lim in limits.items()],
        "",
        "## What an acknowledgement means",
        "",
        "| system | fsync before ack | acknowledged when |",
        "| --- | --- | --- |",
        *[f"| {name} | {FSYNC[name]} | {ACKS[name]} |" for name in results],
        "",
    ]
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped) + ".", ""]
    lines += [
        "## Produce: every record acknowledged before the clock stops",
        "",
        f"| system | {fmt(args.small)} x 100 B records/s | MB/s | {fmt(args.large)} x 1 KiB "
        f"records/s | MB/s |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {name} | {cell(s['produce-small'])} | {cell(s['produce-small'], small_mb, 1)} | "
          f"{cell(s['produce-large'])} | {cell(s['produce-large'], large_mb, 1)} |"
          for name, s in stats.items()],
        "",
        "## Consume everything back, from the first record",
        "",
        "| system | 100 B records/s | MB/s | 1 KiB records/s | MB/s |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {name} | {cell(s['consume-small'])} | {cell(s['consume-small'], small_mb, 1)} | "
          f"{cell(s['consume-large'])} | {cell(s['consume-large'], large_mb, 1)} |"
          for name, s in stats.items()],
        "",
        f"## Send -> receive latency at {fmt(args.rate)} records/s for {args.latency_seconds:g} s",
        "",
        "| system | p50 us | p99 us | max us |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {name} | {cell(s['lat-p50'])} | {cell(s['lat-p99'])} | {cell(s['lat-max'])} |"
          for name, s in stats.items()],
        "",
    ]
    lines += tls_ratios(stats)
    flv = [n for n in stats if n.startswith("fluvial")]
    peers = [n for n in stats if not n.startswith("fluvial")]
    if flv and peers:
        lines += [
            "## Ratios fluvial / peer (medians)",
            "",
            "Throughput: above 1 means fluvial is faster. Latency: below 1 means fluvial is faster.",
            "",
            "| fluvial / peer | produce 100 B | produce 1 KiB | consume 100 B | consume 1 KiB | "
            "p50 | p99 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for f in flv:
            for p in peers:
                r = [stats[f][m][0] / stats[p][m][0] for m in
                     ("produce-small", "produce-large", "consume-small", "consume-large",
                      "lat-p50", "lat-p99")]
                lines.append(f"| {f} / {p} | " + " | ".join(f"{x:.2f}" for x in r) + " |")
        lines.append("")
    lines += goals(stats)
    return "\n".join(lines) + "\n"


TLS_PAIRS = (("fluvial TLS RF=1", "fluvial RF=1"),)
THROUGHPUT = ("produce-small", "produce-large", "consume-small", "consume-large")


def tls_ratios(stats: dict[str, dict]) -> list[str]:
    """TLS / plaintext per metric, for each TLS row measured with its plaintext twin."""
    pairs = [(t, p) for t, p in TLS_PAIRS if t in stats and p in stats]
    if not pairs:
        return []
    lines = ["## TLS / plaintext (medians)", "",
             "Throughput: 1 means TLS costs nothing. Latency: 1 means TLS adds nothing.", "",
             "| rows | produce 100 B | produce 1 KiB | consume 100 B | consume 1 KiB | p50 | "
             "p99 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t, p in pairs:
        r = [stats[t][m][0] / stats[p][m][0] for m in (*THROUGHPUT, "lat-p50", "lat-p99")]
        lines.append(f"| {t} / {p} | " + " | ".join(f"{x:.2f}" for x in r) + " |")
    return lines + [""]


def goals(stats: dict[str, dict]) -> list[str]:
    """The issue's compass, checked against this run's medians."""
    one, three, redis = stats.get("fluvial RF=1"), stats.get("fluvial RF=3"), stats.get("redis always")
    rows = []

    def row(goal: str, value: str, ok: bool) -> None:
        rows.append(f"| {goal} | {value} | {'met' if ok else 'not met'} |")

    if one and redis:
        x = one["produce-small"][0] / redis["produce-small"][0]
        row("durable produce, 100 B: >= 5x Redis (always) records/s", f"{x:.1f}x", x >= 5)
    if one:
        mb = one["produce-large"][0] * LARGE_BYTES / 1e6
        row("durable produce, 1 KiB: >= 300 MB/s (RF=1)", f"{mb:,.0f} MB/s", mb >= 300)
        c = one["consume-small"][0]
        row("consume, 100 B: >= 1M records/s (RF=1)", f"{c:,.0f} records/s", c >= 1e6)
    if one and three:
        for m, what, goal in (("produce-small", "100 B", 0.6), ("produce-large", "1 KiB", 0.5)):
            x = three[m][0] / one[m][0]
            row(f"RF=3 produce >= {goal:.0%} of RF=1 ({what})", f"{x:.1%}", x >= goal)
    if one and redis:
        x = one["consume-large"][0] / redis["consume-large"][0]
        row("consume, 1 KiB: >= 1.5x Redis (always) (RF=1)", f"{x:.2f}x", x >= 1.5)
        for m, what in (("lat-p50", "p50"), ("lat-p99", "p99")):
            x = one[m][0] / redis[m][0]
            row(f"latency {what} <= Redis (always) {what} (RF=1)", f"{x:.2f}x", x <= 1)
    if three and redis:
        x = three["lat-p50"][0] / redis["lat-p50"][0]
        row("latency p50 <= 2x Redis (always) p50 (RF=3)", f"{x:.2f}x", x <= 2)
    tls = stats.get("fluvial TLS RF=1")
    if one and tls:
        worst = min(THROUGHPUT, key=lambda m: tls[m][0] / one[m][0])
        x = tls[worst][0] / one[worst][0]
        row("TLS throughput >= 75 % of plaintext, every row (RF=1)", f"{x:.0%} (lowest: {worst})",
            x >= 0.75)
        x = tls["lat-p50"][0] / one["lat-p50"][0]
        row("TLS latency p50 within 10 % of plaintext (RF=1)", f"{x - 1:+.0%}", x <= 1.10)
    if not rows:
        return []
    return ["## Goals (the issue's compass)", "", "| goal | this run | |", "| --- | ---: | --- |",
            *rows, ""]


# --------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small", type=int, default=200_000, help="records of 100 B")
    ap.add_argument("--large", type=int, default=50_000, help="records of 1 KiB")
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=1000, help="records/s in the latency test")
    ap.add_argument("--systems", default="fluvial,redis,nats",
                    help="comma-separated, from fluvial, redis, nats")
    ap.add_argument("--dir", type=Path, default=None, help="where the servers' data goes "
                                                           "(default: a temporary directory)")
    ap.add_argument("--no-tls", dest="tls", action="store_false",
                    help="skip the fluvial TLS rows (a second cluster, with TLS)")
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    ap.add_argument("--no-results", action="store_true", help="print, do not write RESULTS.md")
    args = ap.parse_args()
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(wanted) - {"fluvial", "redis", "nats"}
    if unknown or args.runs < 1:
        ap.error(f"unknown systems: {', '.join(sorted(unknown))}" if unknown else "--runs >= 1")

    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    load_before = os.getloadavg()
    skipped: list[str] = []
    plan: list[tuple[str, Callable[[Path], dict[str, list[dict]]]]] = []
    for system, missing, runners in (
            ("fluvial", fluvial_missing, [("fluvial", lambda b: run_fluvial(b, args))]),
            ("redis", redis_missing, [("redis always", lambda b: run_redis(b, args, "always")),
                                      ("redis everysec", lambda b: run_redis(b, args, "everysec"))]),
            ("nats", nats_missing, [("nats", lambda b: run_nats(b, args))])):
        if system not in wanted:
            continue
        why = missing()
        if why:
            print(f"{system} skipped: missing {why}")
            skipped.append(f"{system} (missing {why})")
            continue
        plan += runners

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fluvial-compare-") as tmp:
        base = Path(tmp)
        limits = {"before": machine_limits(base)}
        for label, runner in plan:
            print(f"{label} ...", flush=True)
            try:
                results.update(runner(base))
            except Exception as e:  # one system failing must not lose the others' figures
                print(f"  {label} failed: {e!r}", flush=True)
                skipped.append(f"{label} (failed: {e})")
        limits["after"] = machine_limits(base)
        load_after = os.getloadavg()
        report = render(args, results, limits, skipped, started, time.monotonic() - t0,
                        (load_before, load_after), base)

    print()
    print(report)
    if not args.no_results:
        notes = ""
        if args.results.exists():
            old = args.results.read_text()
            if NOTES_MARKER in old:
                notes = old[old.index(NOTES_MARKER):]
        args.results.write_text(report + ("\n" + notes if notes else ""))
        print(f"written to {args.results}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
