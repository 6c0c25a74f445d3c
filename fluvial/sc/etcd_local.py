"""A local three-member etcd cluster, for ``fluvial cluster start --sc 3 --etcd`` and the tests.

``LocalEtcd(base, members=3)`` runs Debian's ``etcd`` binary (package ``etcd-server``) once per
member on loopback ports, each with its own data directory under ``base``. ``start()`` returns
once every member answers; ``url`` is the ``etcd://...`` to give ``fluvial run sc --metadata``.
``kill(i)`` ends one member, for tests of member loss. Processes are ours alone
and ended by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from fluvial.sc.etcd import EtcdClient, EtcdError

PACKAGE = "etcd-server"
START_TIMEOUT = 30.0


class EtcdMissing(RuntimeError):
    pass


def etcd_binary() -> str:
    """The etcd binary's path; EtcdMissing naming the Debian package when there is none."""
    path = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if path is None:
        raise EtcdMissing(f"etcd is not installed: install the Debian package '{PACKAGE}' "
                          f"(apt-get install {PACKAGE})")
    return path


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalEtcd:
    def __init__(self, base: str | os.PathLike, members: int = 3, ports: list[int] | None = None):
        self.base = Path(base)
        self.binary = etcd_binary()
        self.members = members
        ports = ports or free_ports(2 * members)
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:2 * members]
        self.procs: list[subprocess.Popen | None] = [None] * members

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for p in self.client_ports]

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"{h}:{p}" for h, p in self.endpoints)

    def argv(self, i: int, cluster_state: str = "new") -> list[str]:
        """Member ``i``'s command line; ``cluster_state`` "existing" for a restart that joins
        the others (``fluvial cluster resume``)."""
        cluster = ",".join(f"m{j}=http://127.0.0.1:{p}" for j, p in enumerate(self.peer_ports))
        return [self.binary, "--name", f"m{i}", "--data-dir", str(self.base / f"m{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
                "--initial-cluster", cluster, "--initial-cluster-token", "fluvial-local",
                "--initial-cluster-state", cluster_state,
                "--heartbeat-interval", "50", "--election-timeout", "500"]

    def spawn(self, i: int) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / f"m{i}.log", "ab")
        self.procs[i] = subprocess.Popen(self.argv(i), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def start(self) -> LocalEtcd:
        for i in range(self.members):
            self.spawn(i)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until a write succeeds (the cluster has a leader), or RuntimeError with the logs."""
        client = EtcdClient(self.endpoints, timeout=1.0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.call("/v3/kv/put", {"key": "X19yZWFkeQ==", "value": ""})  # "__ready"
                return
            except (EtcdError, ValueError) as e:
                dead = [i for i, p in enumerate(self.procs) if p is not None and p.poll() is not None]
                if time.monotonic() > deadline or len(dead) == self.members:
                    tails = "\n".join((self.base / f"m{i}.log").read_text(errors="replace")[-800:]
                                      for i in range(self.members) if (self.base / f"m{i}.log").exists())
                    raise RuntimeError(f"local etcd did not start: {e}\n{tails}") from e
            time.sleep(0.1)

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        self.procs[i] = None

    def stop(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for i, p in enumerate(self.procs):
            if p is not None:
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
            self.procs[i] = None

    def __enter__(self) -> LocalEtcd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
