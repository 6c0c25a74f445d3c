"""Failure testing against a real local cluster: process control, a workload, and a checker.

Theory of operation
-------------------
The promise under test (docs/replication.md): *with ReadCommitted produce, an acknowledged record
is never lost while one in-sync replica survives, and replicas never diverge.* Three parts, each
usable alone, are shared by ``tests/chaos`` and ``bench/chaos.py`` / ``bench/replication.py``:

* ``ProcessCluster`` drives a cluster of background processes exactly as a user does
  (``fluvial cluster start|resume|shutdown`` in its own ``FLUVIAL_HOME``) and delivers faults to
  the PIDs it started, and only those: ``kill`` is SIGKILL, ``pause``/``cont`` are SIGSTOP/SIGCONT.
  It is synchronous; from trio, call the slow methods through ``trio.to_thread.run_sync``.
  SIGKILL keeps the page cache, so by itself it never loses a byte that was written but not
  fsynced. In *power-loss mode* (``power_loss=True``) every member journals its segment fsyncs
  (``FLUVIAL_SYNC_JOURNAL``, one journal in the cluster home, see ``fluvial.storage.journal``),
  and killing an SPU is SIGKILL followed by ``fluvial.testing.powerloss.apply_power_loss`` on its
  data directory: every segment file is cut back to what was fsynced (or, seeded, torn or
  reordered), which is what a power cut does. A test that passes under SIGKILL but fails here
  found a missing fsync, or a durable LEO that counted unsynced bytes.
* ``Workload`` writes and reads with a deliberately small client built on the wire protocol alone
  (``open_connection`` + the SC and SPU messages), so that it does not depend on the client
  library it is meant to check. Each record's value starts with a unique id,
  ``p<partition>w<writer>-<seq>``. A writer sends one batch at a time; a send answered OK is
  *acknowledged* at the offset the answer gives. Any other outcome (error, timeout, lost
  connection) makes the writer ask the SC for the leader again and resend the *same* batch, so a
  record may be stored more than once, but only if one of its sends went unacknowledged
  (at-least-once). Every send and every acknowledgement lands in a ``History``. Optional
  ReadCommitted consumers poll the leader and record every (offset, value) they were served.
* ``check_history(history, logs)`` is a pure function. ``logs`` holds each replica's final log,
  read from disk with ``read_replica_log`` after the cluster has healed and shut down (plus,
  optionally, what a ReadCommitted read-back over the network returned). It verifies:

  1. every acknowledged record is at its acknowledged offset in the final log, and a record sent
     only once is stored exactly once;
  2. per writer, acknowledged offsets grow with the writer's sequence (order preserved);
  3. no offset holds different records on different replicas, and no two records were
     acknowledged at one offset;
  4. a record stored more than once had an unacknowledged send (duplicates only from retries),
     and never more copies than sends; nothing is stored that was never sent;
  5. every record a ReadCommitted consumer saw is in the final log at the same offset.

Nothing here sleeps to synchronise: waits poll a condition under a deadline. The writers' and
consumers' short back-offs between retries are part of the workload, not synchronisation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from fluvial.errors import ErrorCode, FluvialError
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.batch import BatchError, check_batch
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.record import decode_record_set, encode_batch

log = logging.getLogger("fluvial.testing.chaos")

#: Budget of one ``fluvial cluster ...`` command.
CLI_TIMEOUT_SECONDS = 120.0
#: How long to wait for a killed process to be gone.
KILL_TIMEOUT_SECONDS = 10.0
#: What a power cut does to the bytes that were written but not fsynced (``apply_power_loss``):
#: drop them, keep a torn prefix of them, or keep some later pages but not earlier ones.
POWER_LOSS_MODES = ("cut", "torn", "reorder")
#: The environment variable that makes storage journal its segment fsyncs.
SYNC_JOURNAL_ENV = "FLUVIAL_SYNC_JOURNAL"
_ID = re.compile(rb"^p(\d+)w(\d+)-(\d+)$")


# =============================================================================== processes


class ClusterCommandError(RuntimeError):
    """A ``fluvial cluster`` command failed; the message carries its output and the logs' tails."""


def fluvial_command() -> list[str]:
    """The argv prefix that runs this interpreter's ``fluvial`` CLI."""
    script = Path(sys.executable).parent / "fluvial"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fluvial.cli.main"]


def _pid_alive(pid: int | None) -> bool:
    """True if ``pid`` runs (a zombie does not count)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _is_fluvial_process(pid: int) -> bool:
    """Guard against PID reuse before a last-resort kill."""
    try:
        return b"fluvial" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class ProcessCluster:
    """A local cluster of background processes under its own ``FLUVIAL_HOME``.

    Args:
        home: the ``FLUVIAL_HOME`` (created if needed); data under ``home/data``, logs under
            ``home/logs``.
        spus: how many SPUs (ids 5001, 5002, ...).
        heartbeat_timeout: seconds of SPU silence before the SC fails it.
        replica_lag_time_max: seconds a follower may lag before it leaves the ISR.
        tls: ``--tls``/``--no-tls`` for ``cluster start``; None keeps the CLI's default. With TLS,
            ``admin()`` connects with the client certificate the CLI minted.
        power_loss: power-loss mode (module docstring): members journal their fsyncs to
            ``home/sync-journal`` and ``kill``/``kill_all`` cut every killed SPU's data back to
            it. ``pause`` and the SC are unaffected.
        power_loss_mode: one of ``POWER_LOSS_MODES``, the default of ``kill``/``kill_all``.
        seed: seeds the torn and reordered pages; the n-th power cut of a run always gets the
            same seed (``power_cuts`` lists them).

    Resource handling: ``close()`` (or leaving ``with ProcessCluster(...)``) runs
    ``fluvial cluster shutdown`` and then SIGKILLs whatever PID this object ever saw in
    ``cluster.json`` that is still a running fluvial process. Nothing else is ever signalled.
    """

    def __init__(self, home: str | os.PathLike, spus: int = 3, *, heartbeat_timeout: float = 2.0,
                 replica_lag_time_max: float = 2.0, tls: bool | None = None,
                 power_loss: bool = False, power_loss_mode: str = "cut", seed: int = 0):
        if power_loss_mode not in POWER_LOSS_MODES:
            raise ValueError(f"power_loss_mode {power_loss_mode!r} is not one of {POWER_LOSS_MODES}")
        self.home = Path(home)
        self.spus = spus
        self.tls = tls
        self.heartbeat_timeout = heartbeat_timeout
        self.replica_lag_time_max = replica_lag_time_max
        self.power_loss = power_loss
        self.power_loss_mode = power_loss_mode
        self.seed = seed
        self._seeds = random.Random(seed)
        #: (member, mode, seed) of every power cut applied, in order.
        self.power_cuts: list[tuple[str, str, int]] = []
        self.known_pids: set[int] = set()
        self._paused: set[int] = set()

    def __repr__(self) -> str:
        mode = f", power loss {self.power_loss_mode} seed {self.seed}" if self.power_loss else ""
        return f"ProcessCluster({self.home}{mode})"

    @property
    def journal(self) -> Path | None:
        """The sync journal every member appends to in power-loss mode (None otherwise)."""
        return (self.home / "sync-journal").resolve() if self.power_loss else None

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------------------ commands

    def cli(self, *args: str, check: bool = True,
            timeout: float = CLI_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
        """Run ``fluvial <args>`` with this cluster's ``FLUVIAL_HOME``.

        Raises:
            ClusterCommandError: non-zero exit (with ``check``), or no exit within ``timeout``.
        """
        env = dict(os.environ, FLUVIAL_HOME=str(self.home))
        env.pop("FLUVIAL_CONFIG", None)
        env.pop(SYNC_JOURNAL_ENV, None)
        if self.journal is not None:  # the members inherit it from `fluvial cluster ...`
            env[SYNC_JOURNAL_ENV] = str(self.journal)
        try:
            proc = subprocess.run([*fluvial_command(), *args], env=env, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self._collect_pids()
            raise ClusterCommandError(f"`fluvial {' '.join(args)}` did not finish within "
                                      f"{timeout:.0f}s\n{self.log_tail()}") from e
        finally:
            self._collect_pids()
        if check and proc.returncode != 0:
            raise ClusterCommandError(
                f"`fluvial {' '.join(args)}` exited {proc.returncode}\n--- stdout\n{proc.stdout}"
                f"--- stderr\n{proc.stderr}--- logs\n{self.log_tail()}")
        return proc

    def start(self) -> None:
        """``fluvial cluster start`` on OS-chosen ports."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.journal is not None:
            self.journal.touch()  # a cut before the first fsync finds an empty journal
        tls = [] if self.tls is None else ["--tls" if self.tls else "--no-tls"]
        self.cli("cluster", "start", "--spus", str(self.spus), "--sc-port", "0", "--spu-port", "0",
                 "--heartbeat-timeout", str(self.heartbeat_timeout),
                 "--replica-lag-time-max", str(self.replica_lag_time_max), *tls)

    def resume(self) -> None:
        """``fluvial cluster resume``: restart every member that is not running (same ports, same
        data). Paused members are running and are not touched."""
        self.cli("cluster", "resume")

    def shutdown(self) -> None:
        """``fluvial cluster shutdown`` (SIGTERM, then SIGKILL after its own timeout). Paused
        members are continued first so that they can stop gracefully."""
        self.cont_all()
        self.cli("cluster", "shutdown")

    def close(self) -> None:
        """Stop everything this object started; never raises."""
        self._collect_pids()
        self.cont_all()
        with contextlib.suppress(ClusterCommandError, OSError):
            if any(_pid_alive(p) for p in self.known_pids):
                self.cli("cluster", "shutdown", check=False, timeout=60)
        for pid in self.known_pids:
            if _pid_alive(pid) and _is_fluvial_process(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while any(_pid_alive(p) for p in self.known_pids) and time.monotonic() < deadline:
            time.sleep(0.02)

    # ------------------------------------------------------------------------------- members

    def _state(self) -> dict:
        try:
            return json.loads((self.home / "cluster.json").read_text())
        except FileNotFoundError:
            return {"members": []}

    def members(self) -> list[dict]:
        """The members as ``cluster.json`` has them (kind, id, pid, ports, data_dir, log)."""
        return self._state()["members"]

    def admin(self, timeout: float = 10.0) -> ScAdmin:
        """An ``ScAdmin`` for this cluster; over TLS with the CLI's admin client certificate when
        the cluster runs TLS."""
        from fluvial.net.tls import client_ssl_context

        tls = self._state().get("tls")
        if not tls:
            return ScAdmin(*self.sc_address, timeout=timeout)
        d = Path(tls["dir"])
        ctx = client_ssl_context(d / "ca.crt", cert_file=d / "client-admin.crt",
                                 key_file=d / "client-admin.key")
        return ScAdmin(*self.sc_address, timeout=timeout, ssl_context=ctx,
                       server_hostname=tls["domain"])

    def _collect_pids(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.known_pids.update(m["pid"] for m in self.members() if m.get("pid"))

    def member(self, name: str) -> dict:
        """``"sc"`` or ``"spu-<id>"``."""
        for m in self.members():
            if (m["kind"] == "sc" and name == "sc") or (m["kind"] == "spu" and name == f"spu-{m['id']}"):
                return m
        raise KeyError(f"no member {name!r} in {self.home / 'cluster.json'}")

    @staticmethod
    def spu_name(spu_id: int) -> str:
        return f"spu-{spu_id}"

    @property
    def spu_ids(self) -> list[int]:
        return [m["id"] for m in self.members() if m["kind"] == "spu"]

    @property
    def sc_address(self) -> tuple[str, int]:
        """The SC's public (host, port)."""
        return "127.0.0.1", self.member("sc")["public_port"]

    def data_dir(self, spu_id: int) -> Path:
        return Path(self.member(self.spu_name(spu_id))["data_dir"])

    def pid(self, name: str) -> int:
        return self.member(name)["pid"]

    def is_up(self, name: str) -> bool:
        return _pid_alive(self.member(name).get("pid"))

    # -------------------------------------------------------------------------------- faults

    def _own_pid(self, name: str) -> int:
        pid = self.pid(name)
        self.known_pids.add(pid)
        if not _is_fluvial_process(pid):
            raise RuntimeError(f"{name} (pid {pid}) is not a running fluvial process")
        return pid

    def kill(self, name: str, *, power_loss: bool | None = None, mode: str | None = None) -> float:
        """SIGKILL one member and wait until it is gone; in power-loss mode, an SPU then loses
        what it had not fsynced (``lose_power``).

        Args:
            power_loss: override the cluster's mode for this kill (True needs the journal).
            mode: override ``power_loss_mode`` for this kill.

        Returns:
            ``time.monotonic()`` just before the signal was sent.
        """
        pid = self._own_pid(name)
        t = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self._paused.discard(pid)
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} (pid {pid}) survived SIGKILL for {KILL_TIMEOUT_SECONDS}s")
            time.sleep(0.005)
        log.info("killed %s (pid %d)", name, pid)
        if name != "sc" and (self.power_loss if power_loss is None else power_loss):
            self.lose_power(name, mode)
        return t

    def kill_all(self, *, mode: str | None = None) -> float:
        """SIGKILL every running member at once (the SC too), and in power-loss mode cut every
        SPU back to what it fsynced; returns the time of the first signal."""
        pids = [(m, m["pid"]) for m in self.members() if _pid_alive(m.get("pid"))]
        t = time.monotonic()
        for m, pid in pids:
            if _is_fluvial_process(pid):
                os.kill(pid, signal.SIGKILL)
                self._paused.discard(pid)
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while any(_pid_alive(pid) for _, pid in pids):
            if time.monotonic() > deadline:
                raise RuntimeError("members survived SIGKILL")
            time.sleep(0.005)
        if self.power_loss:
            for spu in sorted(self.spu_ids):
                self.lose_power(self.spu_name(spu), mode)
        return t

    def lose_power(self, name: str, mode: str | None = None) -> None:
        """Do to the stopped SPU ``name``'s data directory what a power cut does to unsynced
        data: ``apply_power_loss`` with the journal, ``mode`` (default ``power_loss_mode``) and
        the run's next seed.

        Raises:
            RuntimeError: not in power-loss mode, or the SPU still runs.
        """
        from fluvial.testing.powerloss import apply_power_loss  # only power-loss runs need it

        if self.journal is None:
            raise RuntimeError(f"{self!r} is not in power-loss mode: no sync journal")
        if self.is_up(name):
            raise RuntimeError(f"{name} still runs; a power cut needs it stopped")
        mode = mode or self.power_loss_mode
        seed = self._seeds.randrange(1 << 32)
        self.power_cuts.append((name, mode, seed))
        apply_power_loss(self.journal, self.data_dir(int(name.removeprefix("spu-"))),
                         mode=mode, seed=seed)
        log.info("power cut on %s (%s, seed %d)", name, mode, seed)

    def pause(self, name: str) -> None:
        """SIGSTOP one member: it keeps its sockets but answers nothing until ``cont``."""
        pid = self._own_pid(name)
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(pid)

    def cont(self, name: str) -> None:
        pid = self.pid(name)
        if pid in self._paused:
            os.kill(pid, signal.SIGCONT)
            self._paused.discard(pid)

    def cont_all(self) -> None:
        for pid in list(self._paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            self._paused.discard(pid)

    # ------------------------------------------------------------------------------- reports

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in sorted((self.home / "logs").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"== {path}\n" + "\n".join(text))
        return "\n".join(chunks) or "(no logs)"


# ================================================================================ SC admin


class ScAdmin:
    """The few SC calls a failure test needs, one short connection per call (the SC itself may
    be killed between calls).

    Raises (every method): ``FluvialError`` subclasses (``ConnectionLost``, ``RequestTimeout``)
    when the SC is unreachable, ``DecodeError`` on a bad answer.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.ssl_context, self.server_hostname = ssl_context, server_hostname

    @contextlib.asynccontextmanager
    async def connect(self, host: str, port: int, client_id: str = "fluvial-chaos"):
        """A handshaken connection to any server of the cluster (the SC or an SPU), with this
        admin's TLS settings."""
        async with open_connection(host, port, ssl_context=self.ssl_context,
                                   server_hostname=self.server_hostname if self.ssl_context else None,
                                   client_id=client_id) as conn:
            await conn.handshake(timeout=self.timeout)
            yield conn

    async def call(self, req):
        async with self.connect(self.host, self.port) as conn:
            return await conn.call(req, timeout=self.timeout)

    async def create_topic(self, name: str, partitions: int = 1, replication: int = 3) -> None:
        spec = so.TopicSpec.computed(partitions, replication)
        status = await self.call(sa.ObjectApiCreateRequest.of(name, spec, timeout_ms=30_000))
        if not status.error_code.ok:
            raise status.error_code.exception(f"create topic {name}: {status.error_message}")

    async def delete_topic(self, name: str) -> None:
        status = await self.call(sa.ObjectApiDeleteRequest.of(so.TopicSpec, name))
        if not status.error_code.ok:
            raise status.error_code.exception(f"delete topic {name}: {status.error_message}")

    async def partitions(self, topic: str) -> dict[int, so.Metadata]:
        """partition index -> Metadata(PartitionSpec, PartitionStatus)."""
        resp = await self.call(sa.ObjectApiListRequest.of(so.PartitionSpec))
        out = {}
        for m in resp.items:
            t, _, p = m.name.rpartition("-")
            if t == topic:
                out[int(p)] = m
        return out

    async def online_spus(self) -> set[int]:
        """The ids of the SPUs the SC counts online."""
        resp = await self.call(sa.ObjectApiListRequest.of(so.SpuSpec))
        return {m.spec.id for m in resp.items
                if m.status.resolution == so.SpuStatusResolution.Online}

    async def spu_endpoints(self) -> dict[int, tuple[str, int]]:
        """spu id -> public (host, port)."""
        resp = await self.call(sa.ObjectApiListRequest.of(so.SpuSpec))
        out = {}
        for m in resp.items:
            ep = m.spec.public_endpoint
            addr = ep.ingress[0] if ep.ingress else None
            host = (addr.ip or addr.hostname) if addr else None
            out[m.spec.id] = (host or "127.0.0.1", ep.port)
        return out


def partition_in_sync(m: so.Metadata, replication: int) -> bool:
    """The SC's view of one partition: online under its elected leader, HW = LEO, and every
    follower reported at the leader's LEO."""
    st = m.status
    if st.resolution != so.PartitionResolution.Online or st.leader.spu != m.spec.leader:
        return False
    followers = {r.spu: r.leo for r in st.replicas}
    return (st.leader.hw == st.leader.leo and len(followers) == replication - 1
            and all(leo == st.leader.leo for leo in followers.values()))


async def wait_until(predicate, what: str, timeout: float, interval: float = 0.05):
    """Poll the async ``predicate`` until it returns a truthy value; exceptions count as False.

    Raises:
        TimeoutError: with ``what`` and the last value or exception.
    """
    last = None
    with trio.move_on_after(timeout):
        while True:
            try:
                last = await predicate()
                if last:
                    return last
            except (FluvialError, DecodeError, OSError) as e:
                last = e
            await trio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


async def wait_partitions_in_sync(admin: ScAdmin, topic: str, partitions: int, replication: int,
                                  timeout: float) -> dict[int, so.Metadata]:
    """Until the SC shows every partition of ``topic`` in sync (``partition_in_sync``)."""
    async def synced():
        ps = await admin.partitions(topic)
        if len(ps) == partitions and all(partition_in_sync(m, replication) for m in ps.values()):
            return ps
        return None

    return await wait_until(synced, f"{topic}: all {replication} replicas in sync", timeout, 0.1)


async def wait_leader(admin: ScAdmin, topic: str, partition: int, timeout: float, *,
                      not_spu: int | None = None) -> int:
    """Until the partition is Online under a leader (other than ``not_spu``) that has reported."""
    async def leader():
        m = (await admin.partitions(topic)).get(partition)
        if m is None:
            return None
        st = m.status
        ok = (st.resolution == so.PartitionResolution.Online and st.leader.spu == m.spec.leader
              and m.spec.leader != not_spu)
        return m.spec.leader if ok else None

    return await wait_until(leader, f"{topic}-{partition}: a live leader", timeout)


async def wait_replica_caught_up(admin: ScAdmin, topic: str, partition: int, spu: int, target: int,
                                 timeout: float) -> None:
    """Until the leader reports ``spu``'s LEO at or beyond ``target`` (or ``spu`` leads)."""
    async def caught_up():
        m = (await admin.partitions(topic)).get(partition)
        if m is None or m.status.resolution != so.PartitionResolution.Online:
            return False
        if m.spec.leader == spu:
            return m.status.leader.leo >= target
        return any(r.spu == spu and r.leo >= target for r in m.status.replicas)

    await wait_until(caught_up, f"{topic}-{partition}: spu {spu} at LEO >= {target}", timeout, 0.1)


# ================================================================================= history


def record_id(value: bytes) -> bytes:
    """The id at the start of a workload value (``b"p0w1-17"`` or ``b"p0w1-17|padding"``)."""
    return value.split(b"|", 1)[0]


def make_id(partition: int, writer: int, seq: int) -> bytes:
    return b"p%dw%d-%d" % (partition, writer, seq)


def parse_id(rid: bytes) -> tuple[int, int, int] | None:
    """(partition, writer, seq) of a workload id, or None for anything else."""
    m = _ID.match(rid)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


@dataclass
class History:
    """Everything the workload did and saw.

    Attributes:
        attempts: id -> how many times it was sent.
        acked: id -> (partition, offset) of the acknowledged send.
        writers: writer key (partition, writer) -> its ids in sequence order.
        observed: partition -> offset -> value served to a ReadCommitted consumer.
        observed_conflicts: (partition, offset, first value, later value) when consumers were
            served two values at one offset.
        ack_times: (monotonic time acknowledged, partition, spu, monotonic time sent) of every
            acknowledged send.
        errors: error kind -> count of failed sends.
    """

    attempts: dict[bytes, int] = field(default_factory=dict)
    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    writers: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)
    observed: dict[int, dict[int, bytes]] = field(default_factory=lambda: defaultdict(dict))
    observed_conflicts: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)
    ack_times: list[tuple[float, int, int, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def attempt(self, partition: int, writer: int, ids: Sequence[bytes]) -> None:
        seq = self.writers.setdefault((partition, writer), [])
        for rid in ids:
            n = self.attempts.get(rid, 0)
            if n == 0:
                seq.append(rid)
            self.attempts[rid] = n + 1

    def ack(self, partition: int, base_offset: int, ids: Sequence[bytes], spu: int,
            sent_at: float, now: float) -> None:
        for i, rid in enumerate(ids):
            self.acked[rid] = (partition, base_offset + i)
        self.ack_times.append((now, partition, spu, sent_at))

    def observe(self, partition: int, offset: int, value: bytes) -> None:
        seen = self.observed[partition]
        old = seen.get(offset)
        if old is None:
            seen[offset] = value
        elif old != value:
            self.observed_conflicts.append((partition, offset, old, value))

    def acks_since(self, t: float, partition: int | None = None) -> int:
        return sum(1 for (at, p, _, _) in self.ack_times
                   if at > t and (partition is None or p == partition))

    def acks_sent_after(self, t: float, partition: int | None = None) -> list[tuple[float, int, int, float]]:
        """The acknowledged sends that started after ``t``."""
        return [a for a in self.ack_times if a[3] > t and (partition is None or a[1] == partition)]

    def failover_time(self, partition: int, killed_at: float, killed_spu: int) -> float | None:
        """Seconds from ``killed_at`` to the first acknowledgement on ``partition`` by another SPU."""
        for at, p, spu, _ in self.ack_times:
            if at > killed_at and p == partition and spu != killed_spu:
                return at - killed_at
        return None


# ================================================================================= checker


Log = Sequence[tuple[int, bytes]]


@dataclass
class CheckResult:
    """What ``check_history`` found. ``ok`` is True when no rule was broken."""

    acknowledged: int = 0
    attempted: int = 0
    duplicates: int = 0  # extra stored copies of ids that had an unacknowledged send (allowed)
    lost: list[str] = field(default_factory=list)
    inconsistent_offsets: list[str] = field(default_factory=list)
    ack_conflicts: list[str] = field(default_factory=list)
    bad_duplicates: list[str] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    unknown_records: list[str] = field(default_factory=list)
    consumer_violations: list[str] = field(default_factory=list)
    replica_ends: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """Every replica of every partition ends at the same offset (a healed cluster)."""
        return all(len(set(ends.values())) <= 1 for ends in self.replica_ends.values())

    @property
    def ok(self) -> bool:
        return not (self.lost or self.inconsistent_offsets or self.ack_conflicts
                    or self.bad_duplicates or self.order_violations or self.unknown_records
                    or self.consumer_violations)

    def summary(self, limit: int = 10) -> str:
        lines = [f"acknowledged {self.acknowledged} of {self.attempted} attempted ids, "
                 f"lost {len(self.lost)}, inconsistent offsets {len(self.inconsistent_offsets)}, "
                 f"duplicates {self.duplicates}, replica ends {self.replica_ends}"]
        for name in ("lost", "inconsistent_offsets", "ack_conflicts", "bad_duplicates",
                     "order_violations", "unknown_records", "consumer_violations"):
            items = getattr(self, name)
            if items:
                lines.append(f"{name} ({len(items)}): " + "; ".join(items[:limit])
                             + (" ..." if len(items) > limit else ""))
        return "\n".join(lines)


def check_history(history: History, logs: Mapping[int, Mapping[str, Log]],
                  reference: Mapping[int, str] | None = None) -> CheckResult:
    """Check a run against the promise (see the module docstring for the five rules).

    Args:
        history: what the workload sent, had acknowledged and saw.
        logs: partition -> replica label (``"spu-5001"``, ``"read-back"``...) -> that replica's
            final records as (offset, value), in offset order.
        reference: partition -> the label whose log is *the* log (the final leader). By default
            the union of all replicas' logs (they must agree wherever they overlap anyway).

    Returns:
        A ``CheckResult``; nothing is raised for a broken rule.

    Example: writer p0w0 sent a (once, acked at 0) and b (twice: a timeout, then acked at 2); the
    replicas hold [(0, a), (1, b), (2, b)] -> ok, duplicates 1. With only [(0, a), (1, b)], b is
    lost (not at its acknowledged offset 2).
    """
    res = CheckResult(acknowledged=len(history.acked), attempted=len(history.attempts))
    partitions = set(logs) | {p for p, _ in history.acked.values()}

    # the final log of each partition, and rule 3 across replicas
    final: dict[int, dict[int, bytes]] = {}
    for p in sorted(partitions):
        replicas = logs.get(p, {})
        res.replica_ends[p] = {label: (recs[-1][0] + 1 if recs else 0)
                               for label, recs in replicas.items()}
        merged: dict[int, dict[str, bytes]] = defaultdict(dict)
        for label, recs in replicas.items():
            for offset, value in recs:
                merged[offset][label] = value
        for offset in sorted(merged):
            values = merged[offset]
            if len(set(values.values())) > 1:
                res.inconsistent_offsets.append(
                    f"{p}@{offset}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())))
        ref = reference.get(p) if reference else None
        if ref is not None:
            final[p] = dict(replicas.get(ref, ()))
        else:
            final[p] = {offset: next(iter(vs.values())) for offset, vs in merged.items()}

    # where each id is stored
    stored: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for p, recs in final.items():
        for offset, value in recs.items():
            rid = record_id(value)
            stored[rid].append((p, offset))
            if rid not in history.attempts:
                res.unknown_records.append(f"{p}@{offset}: {value[:40]!r} was never sent")

    # rules 1 and 3 (acknowledgements)
    by_offset: dict[tuple[int, int], bytes] = {}
    for rid, (p, offset) in sorted(history.acked.items()):
        other = by_offset.setdefault((p, offset), rid)
        if other != rid:
            res.ack_conflicts.append(f"{p}@{offset}: acknowledged for both {other!r} and {rid!r}")
        value = final.get(p, {}).get(offset)
        if value is None or record_id(value) != rid:
            where = stored.get(rid)
            res.lost.append(f"{rid!r} acknowledged at {p}@{offset}, "
                            f"final log has {value[:40] if value else None!r} there"
                            + (f"; the id is stored at {where}" if where else "; the id is gone"))

    # rule 4: duplicates
    for rid, places in stored.items():
        sends = history.attempts.get(rid, 0)
        if len(places) > 1:
            if sends <= 1 or len(places) > sends:
                res.bad_duplicates.append(f"{rid!r} stored {len(places)} times at {places} "
                                          f"but sent {sends} time(s)")
            else:
                res.duplicates += len(places) - 1

    # rule 2: per-writer order of acknowledgements
    for (p, w), ids in sorted(history.writers.items()):
        last: tuple[int, bytes] | None = None
        for rid in ids:
            at = history.acked.get(rid)
            if at is None:
                continue
            if at[0] != p:
                res.order_violations.append(f"{rid!r} of partition {p} acknowledged on {at[0]}")
            elif last is not None and at[1] <= last[0]:
                res.order_violations.append(f"writer p{p}w{w}: {rid!r} at {at[1]} after "
                                            f"{last[1]!r} at {last[0]}")
            last = (at[1], rid)

    # rule 5: what ReadCommitted consumers saw
    for p, seen in sorted(history.observed.items()):
        recs = final.get(p, {})
        for offset, value in sorted(seen.items()):
            now = recs.get(offset)
            if now != value:
                res.consumer_violations.append(f"{p}@{offset}: consumer saw {value[:40]!r}, final "
                                               f"log has {now[:40] if now else None!r}")
    for p, offset, a, b in history.observed_conflicts:
        res.consumer_violations.append(f"{p}@{offset}: consumers were served both {a[:40]!r} "
                                       f"and {b[:40]!r}")
    return res


# ============================================================================== disk logs


def read_replica_log(spu_data_dir: str | os.PathLike, topic: str, partition: int) -> list[tuple[int, bytes]]:
    """Every record of one replica's log on disk, as (offset, value).

    Open only a replica no process is using (shut the cluster down first). Opening runs the
    storage recovery (which may cut a torn tail, as the SPU would on its next start); nothing is
    appended. A replica directory that does not exist reads as empty and is not created.
    """
    from fluvial.storage.replica import Replica  # storage is sync file I/O; imported on use

    if not (Path(spu_data_dir) / f"{topic}-{partition}").is_dir():
        return []
    replica = Replica.open(spu_data_dir, topic, partition)
    out: list[tuple[int, bytes]] = []
    try:
        offset = replica.log_start_offset
        while offset < replica.leo:
            chunk = replica.read(offset, 1 << 20, replica.leo)
            data = chunk.read_bytes()
            if not data:
                break
            out += [(r.offset, r.value) for r in decode_record_set(data) if r.offset >= offset]
            offset = chunk.next_offset
    finally:
        replica.close()
    return out


def cut_segment_tail(spu_data_dir: str | os.PathLike, topic: str, partition: int,
                     batches: int) -> int:
    """Cut the last ``batches`` whole batches off a stopped replica's active segment, as a power
    cut does to batches written after the last fsync; returns the offset the log now ends at.

    Deterministic, unlike ``apply_power_loss``: for a test that needs the replica to lose
    exactly these batches (they must not have been acknowledged by it, or the test models a
    broken promise of its own).

    Raises:
        ValueError: the active segment holds fewer than ``batches`` batches.
    """
    directory = Path(spu_data_dir) / f"{topic}-{partition}"
    active = max(directory.glob("*.log"), key=lambda p: int(p.stem))
    data = active.read_bytes()
    starts: list[tuple[int, int]] = []  # (position, base offset) of each whole valid batch
    pos = 0
    while pos < len(data):
        try:
            h = check_batch(data, pos)
        except BatchError:
            break  # the preallocated zeros after the last batch, or a torn tail
        starts.append((pos, h.base_offset))
        pos += h.size
    if not 1 <= batches <= len(starts):
        raise ValueError(f"{active} holds {len(starts)} batches; cannot cut {batches}")
    position, end_offset = starts[-batches]
    os.truncate(active, position)
    return end_offset


def read_cluster_logs(cluster: ProcessCluster, topic: str, partitions: int,
                      replicas: Mapping[int, Sequence[int]] | None = None) -> dict[int, dict[str, list]]:
    """partition -> "spu-<id>" -> records, for every SPU of a (shut down) cluster, or only for
    the SPUs ``replicas`` (partition -> SPU ids) assigns the partition to."""
    return {p: {f"spu-{s}": read_replica_log(cluster.data_dir(s), topic, p)
                for s in (cluster.spu_ids if replicas is None else replicas[p])}
            for p in range(partitions)}


# ================================================================================ workload


@dataclass
class WorkloadConfig:
    """Args:
        topic, partitions: where to write.
        writers_per_partition: concurrent writers per partition (one batch in flight each).
        batch_records: records per produce request.
        value_bytes: pad each value to at least this many bytes.
        isolation: ReadCommitted (acks at the committed level) or ReadUncommitted.
        produce_timeout_ms: the server's produce timeout; the client waits 5 s longer.
        consumers: run one ReadCommitted consumer per partition.
        max_batches: stop each writer after this many acknowledged batches (None: until stopped).
        first_writer: the number of the first writer (``p<partition>w<first_writer>-...``), so
            that successive workloads sharing one ``History`` never reuse an id.
    """

    topic: str
    partitions: int = 1
    writers_per_partition: int = 2
    batch_records: int = 5
    value_bytes: int = 0
    isolation: api.Isolation = api.Isolation.ReadCommitted
    produce_timeout_ms: int = 3000
    consumers: bool = True
    max_batches: int | None = None
    first_writer: int = 0


class _Router:
    """Partition leaders and SPU endpoints, from the SC, refreshed on demand."""

    def __init__(self, admin: ScAdmin, topic: str):
        self.admin, self.topic = admin, topic
        self.endpoints: dict[int, tuple[str, int]] = {}

    async def leader(self, partition: int) -> tuple[int, str, int]:
        m = (await self.admin.partitions(self.topic)).get(partition)
        if m is None:
            raise LookupError(f"{self.topic}-{partition} unknown to the SC")
        spu = m.spec.leader
        if spu not in self.endpoints:
            self.endpoints.update(await self.admin.spu_endpoints())
        if spu not in self.endpoints:
            raise LookupError(f"no endpoint for SPU {spu}")
        host, port = self.endpoints[spu]
        return spu, host, port


_RETRIABLE = (FluvialError, DecodeError, OSError, LookupError, trio.BrokenResourceError,
              trio.ClosedResourceError)


class Workload:
    """Writers (and ReadCommitted consumers) against one topic; see the module docstring.

    Use ``async with open_workload(admin, config) as w:`` ... ``await w.stop()``; the ``History``
    is ``w.history``.
    """

    def __init__(self, admin: ScAdmin, config: WorkloadConfig, history: History | None = None):
        self.admin = admin
        self.config = config
        self.history = History() if history is None else history
        self._stopping = False
        self._writers_done = trio.Event()
        self._progress = trio.Event()
        self._active_writers = 0
        self._scope: trio.CancelScope | None = None
        self.read_back: dict[int, list[tuple[int, bytes]]] = {}

    # ------------------------------------------------------------------------------ waiting

    def _changed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def wait_for(self, condition, what: str, timeout: float):
        """Until ``condition()`` (sync, on the history) is truthy; re-checked on every ack.

        Raises:
            TimeoutError: naming ``what`` and the error counts so far.
        """
        with trio.move_on_after(timeout):
            while True:
                value = condition()
                if value:
                    return value
                if self._writers_done.is_set():
                    break
                await self._progress.wait()
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}; acked "
                           f"{len(self.history.acked)}, errors {dict(self.history.errors)}")

    async def wait_acks(self, count: int, timeout: float, partition: int | None = None) -> None:
        """Until ``count`` more batches are acknowledged (on ``partition``) from now."""
        now = time.monotonic()
        await self.wait_for(lambda: self.history.acks_since(now, partition) >= count,
                            f"{count} acknowledged batches", timeout)

    async def wait_writers_done(self, timeout: float) -> None:
        """Until every writer has stopped (each had ``max_batches`` acknowledged, or ``stop``).

        Raises:
            TimeoutError: with the acknowledgement and error counts so far.
        """
        with trio.move_on_after(timeout):
            await self._writers_done.wait()
            return
        raise TimeoutError(f"writers not done after {timeout}s; acked {len(self.history.acked)}, "
                           f"errors {dict(self.history.errors)}")

    def failed_sends(self) -> int:
        """Sends that were not acknowledged so far (errors, timeouts, lost connections)."""
        return sum(n for kind, n in self.history.errors.items() if not kind.startswith("consumer "))

    async def wait_failed_sends(self, count: int, timeout: float) -> None:
        """Until ``count`` more sends have failed from now."""
        start = self.failed_sends()
        await self.wait_for(lambda: self.failed_sends() - start >= count,
                            f"{count} failed sends", timeout)

    async def wait_failover(self, partition: int, killed_at: float, killed_spu: int,
                            timeout: float) -> float:
        """Seconds from the kill to the first acknowledgement by another SPU."""
        return await self.wait_for(
            lambda: self.history.failover_time(partition, killed_at, killed_spu),
            f"an acknowledgement on partition {partition} after killing spu {killed_spu}", timeout)

    # -------------------------------------------------------------------------------- tasks

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                if cfg.consumers:
                    for p in range(cfg.partitions):
                        nursery.start_soon(self._consumer, p)
                async with trio.open_nursery() as writers:
                    for p in range(cfg.partitions):
                        for w in range(cfg.writers_per_partition):
                            writers.start_soon(self._writer, p, cfg.first_writer + w)
                    task_status.started()
                self._writers_done.set()
                self._changed()
                await trio.sleep_forever()  # consumers run until stop()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop the writers after their current send (bounded by the produce timeout), then the
        consumers."""
        self._stopping = True
        with trio.move_on_after(timeout):
            await self._writers_done.wait()
        if self._scope is not None:
            self._scope.cancel()

    async def _writer(self, partition: int, writer: int) -> None:
        cfg = self.config
        router = _Router(self.admin, cfg.topic)
        seq = 0
        acked_batches = 0
        pad = b""
        if cfg.value_bytes:
            pad = b"|" + b"x" * max(0, cfg.value_bytes - len(make_id(partition, writer, 0)) - 1)
        batch: list[bytes] | None = None
        delay = 0.02
        client_timeout = cfg.produce_timeout_ms / 1000 + 5
        while not self._stopping and (cfg.max_batches is None or acked_batches < cfg.max_batches):
            try:
                spu, host, port = await router.leader(partition)
                async with self.admin.connect(host, port) as conn:
                    while not self._stopping and (cfg.max_batches is None
                                                  or acked_batches < cfg.max_batches):
                        if batch is None:
                            batch = [make_id(partition, writer, seq + i) for i in range(cfg.batch_records)]
                            seq += cfg.batch_records
                        req = api.ProduceRequest(
                            None, cfg.isolation, cfg.produce_timeout_ms,
                            [api.TopicProduceData(cfg.topic, [api.PartitionProduceData(
                                partition, encode_batch([rid + pad for rid in batch]))])], [])
                        self.history.attempt(partition, writer, batch)
                        sent_at = time.monotonic()
                        resp = await conn.call(req, timeout=client_timeout)
                        pr = resp.responses[0].partitions[0]
                        if pr.error_code.ok:
                            self.history.ack(partition, pr.base_offset, batch, spu, sent_at,
                                             time.monotonic())
                            batch = None
                            acked_batches += 1
                            delay = 0.02
                            self._changed()
                            continue
                        self.history.errors[pr.error_code.code.name] += 1
                        self._changed()
                        if pr.error_code.code != ErrorCode.RequestTimedOut:
                            break  # not the leader any more (or worse): ask the SC again
                        # timed out: the leader may have changed meanwhile
                        if (await router.leader(partition))[0] != spu:
                            break
            except _RETRIABLE as e:
                self.history.errors[type(e).__name__] += 1
                self._changed()
            if self._stopping:
                break
            await trio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _consumer(self, partition: int) -> None:
        """Poll the leader with ReadCommitted Fetch from the next offset, recording what is served."""
        cfg = self.config
        router = _Router(self.admin, cfg.topic)
        offset = 0
        while True:
            try:
                spu, host, port = await router.leader(partition)
                async with self.admin.connect(host, port, "fluvial-chaos-consumer") as conn:
                    while True:
                        records, hw, error = await _fetch(conn, cfg.topic, partition, offset,
                                                          api.Isolation.ReadCommitted)
                        if error is not None:
                            self.history.errors[f"consumer {error}"] += 1
                            break
                        for r in records:
                            if r.offset >= offset:
                                self.history.observe(partition, r.offset, r.value)
                        if records:
                            offset = max(offset, records[-1].offset + 1)
                        else:
                            await trio.sleep(0.02)
            except _RETRIABLE as e:
                self.history.errors[f"consumer {type(e).__name__}"] += 1
            await trio.sleep(0.1)

    async def read_all(self, partition: int, timeout: float = 30.0) -> list[tuple[int, bytes]]:
        """Read the whole partition from its leader at ReadCommitted (after the writers stopped)."""
        router = _Router(self.admin, self.config.topic)
        out: list[tuple[int, bytes]] = []
        with trio.fail_after(timeout):
            spu, host, port = await router.leader(partition)
            async with self.admin.connect(host, port, "fluvial-chaos-reader") as conn:
                offset = 0
                while True:
                    records, hw, error = await _fetch(conn, self.config.topic, partition, offset,
                                                      api.Isolation.ReadCommitted)
                    if error is not None:
                        raise RuntimeError(f"read-back of partition {partition} at {offset}: {error}")
                    out += [(r.offset, r.value) for r in records if r.offset >= offset]
                    if records:
                        offset = records[-1].offset + 1
                    if offset >= hw:
                        break
        self.read_back[partition] = out
        return out


async def send_batch(admin: ScAdmin, spu: int, topic: str, partition: int, values: Sequence[bytes], *,
                     isolation: api.Isolation, timeout_ms: int = 3000) -> api.PartitionProduceResponse:
    """Produce one batch of ``values`` to SPU ``spu`` (whatever its role) and return its answer.

    Raises:
        FluvialError (``ConnectionLost``, ``RequestTimeout``): no answer.
    """
    host, port = (await admin.spu_endpoints())[spu]
    async with admin.connect(host, port) as conn:
        req = api.ProduceRequest(None, isolation, timeout_ms, [api.TopicProduceData(
            topic, [api.PartitionProduceData(partition, encode_batch(list(values)))])], [])
        resp = await conn.call(req, timeout=timeout_ms / 1000 + 5)
    return resp.responses[0].partitions[0]


async def _fetch(conn, topic: str, partition: int, offset: int, isolation: api.Isolation):
    """One classic Fetch: (records, high watermark, error name or None)."""
    req = api.FetchRequest(0, 0, 1 << 20, isolation, [api.FetchableTopic(topic, [
        api.FetchPartition(partition, -1, offset, 0, 1 << 20)])], [])
    resp = await conn.call(req, timeout=10)
    pr = resp.topics[0].partitions[0]
    if not pr.error_code.ok:
        return [], 0, pr.error_code.code.name
    records = decode_record_set(pr.records) if pr.records else []
    return records, pr.high_watermark, None


@contextlib.asynccontextmanager
async def open_workload(admin: ScAdmin, config: WorkloadConfig, history: History | None = None):
    """Run a ``Workload`` for the body of the block (recording into ``history``, a new one by
    default); it is stopped when the block exits."""
    workload = Workload(admin, config, history)
    async with trio.open_nursery() as nursery:
        await nursery.start(workload.run)
        try:
            yield workload
        finally:
            with trio.CancelScope(shield=True):
                await workload.stop()
            nursery.cancel_scope.cancel()


# =============================================================================== scenarios


@dataclass
class RoundStats:
    killed: int
    failover_seconds: float


async def kill_leader_round(cluster: ProcessCluster, admin: ScAdmin, workload: Workload,
                            partition: int = 0, *, acks_before: int = 20, acks_after: int = 20,
                            replication: int = 3, timeout: float = 60.0) -> RoundStats:
    """One F1 round: let ``acks_before`` batches through, SIGKILL the partition's leader, measure
    the failover (kill -> first acknowledgement by another SPU), let ``acks_after`` through,
    restart the killed SPU and wait until it has caught up with what was acknowledged."""
    topic = workload.config.topic
    await workload.wait_acks(acks_before, timeout, partition)
    leader = await wait_leader(admin, topic, partition, timeout)
    killed_at = await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(leader))
    failover = await workload.wait_failover(partition, killed_at, leader, timeout)
    await workload.wait_acks(acks_after, timeout, partition)
    await trio.to_thread.run_sync(cluster.resume)
    target = 1 + max((o for p, o in workload.history.acked.values() if p == partition), default=-1)
    await wait_replica_caught_up(admin, topic, partition, leader, target, timeout)
    return RoundStats(leader, failover)


async def heal_and_collect(cluster: ProcessCluster, admin: ScAdmin, workload: Workload, *,
                           replication: int = 3, timeout: float = 60.0) -> CheckResult:
    """After the workload stopped: restart what is down, wait until every replica is in sync,
    read everything back at ReadCommitted, shut the cluster down, read every replica from disk and
    check the history."""
    cfg = workload.config
    await trio.to_thread.run_sync(cluster.resume)
    synced = await wait_partitions_in_sync(admin, cfg.topic, cfg.partitions, replication, timeout)
    reference = {}
    for p in range(cfg.partitions):
        await workload.read_all(p)
        reference[p] = "read-back"
    await trio.to_thread.run_sync(cluster.shutdown)
    assigned = {p: list(m.spec.replicas) for p, m in synced.items()}
    logs = await trio.to_thread.run_sync(read_cluster_logs, cluster, cfg.topic, cfg.partitions,
                                         assigned)
    for p in range(cfg.partitions):
        logs[p]["read-back"] = workload.read_back[p]
        leader = f"spu-{synced[p].spec.leader}"
        reference[p] = leader if leader in logs[p] else "read-back"
    return check_history(workload.history, logs, reference)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


@contextlib.contextmanager
def temporary_home(prefix: str = "fluvial-chaos-", keep: bool = False) -> Iterator[Path]:
    """A fresh directory for a bench cluster; removed afterwards unless ``keep``."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "POWER_LOSS_MODES", "CheckResult", "ClusterCommandError", "cut_segment_tail", "History", "ProcessCluster", "RoundStats", "ScAdmin",
    "Workload", "WorkloadConfig", "check_history", "heal_and_collect", "kill_leader_round",
    "make_id", "open_workload", "send_batch", "parse_id", "partition_in_sync", "percentile", "read_cluster_logs",
    "read_replica_log", "record_id", "temporary_home", "wait_leader", "wait_partitions_in_sync",
    "wait_replica_caught_up", "wait_until",
]
