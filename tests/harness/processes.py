"""Process control for failure tests: a cluster of background processes, and the faults delivered to them.

``ProcessCluster`` drives a cluster exactly as a user does (``fluvial cluster start|resume|shutdown``
in its own ``FLUVIAL_HOME``) and delivers faults to the PIDs it started, and only those: ``kill`` is
SIGKILL, ``pause``/``cont`` are SIGSTOP/SIGCONT. It is synchronous; from trio, call the slow methods
through ``trio.to_thread.run_sync``.

SIGKILL keeps the page cache, so by itself it never loses a byte that was written but not fsynced.
In *power-loss mode* (``power_loss=True``) every member journals its segment fsyncs
(``FLUVIAL_SYNC_JOURNAL``, one journal in the cluster home, see ``fluvial.storage.journal``), and
killing an SPU is SIGKILL followed by ``harness.powerloss.apply_power_loss`` on its data
directory: every segment file is cut back to what was fsynced (or, seeded, torn or reordered),
which is what a power cut does. A test that passes under SIGKILL but fails here found a missing
fsync, or a durable LEO that counted unsynced bytes.

Nothing here sleeps to synchronise: waits poll a condition under a deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from fluvial.pids import is_fluvial_process, pid_alive
from harness.client import ScAdmin
from harness.powerloss import apply_power_loss

log = logging.getLogger("harness.processes")

#: Budget of one ``fluvial cluster ...`` command.
CLI_TIMEOUT_SECONDS = 120.0
#: How long to wait for a killed process to be gone.
KILL_TIMEOUT_SECONDS = 10.0
#: What a power cut does to the bytes that were written but not fsynced (``apply_power_loss``):
#: drop them, keep a torn prefix of them, or keep some later pages but not earlier ones.
POWER_LOSS_MODES = ("cut", "torn", "reorder")
#: The environment variable that makes storage journal its segment fsyncs.
SYNC_JOURNAL_ENV = "FLUVIAL_SYNC_JOURNAL"


class ClusterCommandError(RuntimeError):
    """A ``fluvial cluster`` command failed; the message carries its output and the logs' tails."""


def fluvial_command() -> list[str]:
    """The argv prefix that runs this interpreter's ``fluvial`` CLI."""
    script = Path(sys.executable).parent / "fluvial"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fluvial.cli.main"]


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
                 power_loss: bool = False, power_loss_mode: str = "cut", seed: int = 0,
                 start_args: tuple[str, ...] = ()):
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
        self.start_args = tuple(start_args)  # more `cluster start` flags (e.g. --sc 3 --etcd)
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
                 "--replica-lag-time-max", str(self.replica_lag_time_max), *tls, *self.start_args)

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
            if any(pid_alive(p) for p in self.known_pids):
                self.cli("cluster", "shutdown", check=False, timeout=60)
        for pid in self.known_pids:
            if pid_alive(pid) and is_fluvial_process(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while any(pid_alive(p) for p in self.known_pids) and time.monotonic() < deadline:
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
        """``"sc"`` (the first SC), ``"sc-<id>"`` (with several SCs), ``"spu-<id>"`` or ``"gateway"``."""
        for m in self.members():
            if (m["kind"] == "sc" and name in ("sc", f"sc-{m['id']}")) or (m["kind"] == "spu" and name == f"spu-{m['id']}"):
                return m
            if m["kind"] == "gateway" and name == "gateway":  # `cluster start --gateway`
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
        return pid_alive(self.member(name).get("pid"))

    # -------------------------------------------------------------------------------- faults

    def _own_pid(self, name: str) -> int:
        pid = self.pid(name)
        self.known_pids.add(pid)
        if not is_fluvial_process(pid):
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
        while pid_alive(pid):
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
        pids = [(m, m["pid"]) for m in self.members() if pid_alive(m.get("pid"))]
        t = time.monotonic()
        for m, pid in pids:
            if is_fluvial_process(pid):
                os.kill(pid, signal.SIGKILL)
                self._paused.discard(pid)
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while any(pid_alive(pid) for _, pid in pids):
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



@contextlib.contextmanager
def temporary_home(prefix: str = "fluvial-chaos-", keep: bool = False) -> Iterator[Path]:
    """A fresh directory for a bench cluster; removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
