"""Fixtures for the compat suite: the official ``fluvio==0.21.0`` client against a real fluvial cluster.

Rules of this suite
-------------------
* A cluster is a set of real background processes started with ``fluvial cluster start`` in a temporary
  ``FLUVIAL_HOME``, on ports the OS picks (``--sc-port 0 --spu-port 0``). The official client finds it through
  ``FLV_PROFILE_PATH`` (for ``Fluvio.connect()``) or through the endpoint read back from the written profile.
* Teardown runs ``fluvial cluster shutdown``; as a last resort it kills only the PIDs that
  ``fluvial cluster status -O json`` reported for this cluster. A small *reaper* process holds those PIDs too and
  kills them if this pytest process dies without disarming it (for example after the hard watchdog below).
* The official client blocks in native code, sometimes holding the GIL (admin calls, ``ProduceOutput.wait()``),
  sometimes not. Every test therefore runs under a two-stage watchdog:

  1. a soft ``SIGALRM`` that raises :class:`Hang` in the main thread. It fires inside consumer ``next()`` (the
     binding checks signals every 100 ms) and in Python code, which covers most hangs;
  2. a hard ``faulthandler`` timer that dumps every thread's traceback and exits the process, for a call that
     never returns to Python. It needs no GIL.

  ``FLV_SOCKET_WAIT`` and ``FLV_METADATA_TIMEOUT`` (read once per process by the client) keep the client's own
  request and metadata waits short, so a silent server usually turns into an error instead of a hang.
* Calls that may block while holding the GIL with no timeout at all (admin watch streams) run in a subprocess:
  :func:`run_client_snippet`.
* Records are never produced from a thread of a consuming process: a consumer's ``next()`` holds the GIL.
  Live tails produce from another process, ``producer_proc.py``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import fluvio

from fluvial.pids import is_fluvial_process, pid_alive

HERE = Path(__file__).resolve().parent
PRODUCER_PROC = HERE / "producer_proc.py"

#: Seconds the client waits for any request/response on a multiplexed socket (FLV_SOCKET_WAIT).
CLIENT_SOCKET_WAIT_S = 10
#: Milliseconds the client waits for a first metadata change before a lookup fails (FLV_METADATA_TIMEOUT).
CLIENT_METADATA_TIMEOUT_MS = 10_000
#: Default per-test budget for the soft watchdog; a test may ask for more with ``@pytest.mark.compat(timeout=S)``.
DEFAULT_TEST_TIMEOUT_S = 60.0
#: Extra seconds the hard watchdog allows after the soft one before it dumps tracebacks and exits.
HARD_WATCHDOG_GRACE_S = 20.0
#: Budget of one ``fluvial cluster ...`` command.
CLI_TIMEOUT_S = 90.0

CLIENT_ENV = {
    "FLV_SOCKET_WAIT": str(CLIENT_SOCKET_WAIT_S),
    "FLV_METADATA_TIMEOUT": str(CLIENT_METADATA_TIMEOUT_MS),
}


# --------------------------------------------------------------------------------------------------------------
# watchdog


_watchdog_active = False


class Hang(BaseException):
    """A compat test ran past its time budget (raised by the soft watchdog).

    A ``BaseException`` so that ``pytest.raises(Exception)`` around a client call cannot mistake a hang for the
    error the test expects.
    """


#: Where the hard watchdog writes its traceback dump. Under pytest's fd capture, fd 2 is a temporary file that
#: is lost when the process exits, so this is pytest's own copy of the real stderr when available.
_pytest_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _pytest_config
    _pytest_config = config


def _hard_dump_file() -> Any:
    """pytest's duplicate of the real stderr (stored by its faulthandler plugin, whose ``pytest_configure`` may
    run after ours, hence the lazy lookup), else ``sys.__stderr__``."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key  # private, hence the fallback
    except ImportError:
        return sys.__stderr__
    if _pytest_config is None:
        return sys.__stderr__
    return _pytest_config.stash.get(fault_handler_stderr_fd_key, sys.__stderr__)


@contextlib.contextmanager
def watchdog(seconds: float, what: str) -> Iterator[None]:
    """Bound the enclosed block: soft ``SIGALRM`` after *seconds*, hard process exit after a grace period.

    Args:
        seconds: the soft budget.
        what: a label used in the :class:`Hang` message.

    Raises:
        Hang: when the soft budget runs out while Python code (or a signal-checking native call) is running.
    """

    global _watchdog_active
    if _watchdog_active:  # an enclosing watchdog already bounds this block (there is only one ITIMER_REAL)
        yield
        return

    def _on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"{what} exceeded {seconds:.0f} s (soft watchdog)")

    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + HARD_WATCHDOG_GRACE_S, exit=True, file=_hard_dump_file())
    _watchdog_active = True
    try:
        yield
    finally:
        _watchdog_active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _compat_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("compat")
    seconds = DEFAULT_TEST_TIMEOUT_S
    if marker is not None and "timeout" in marker.kwargs:
        seconds = float(marker.kwargs["timeout"])
    with watchdog(seconds, request.node.nodeid):
        yield


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll *predicate* until it returns a truthy value, or fail after *timeout_s*.

    Returns:
        the truthy value.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}; last value: {last!r}")
        time.sleep(interval_s)


# --------------------------------------------------------------------------------------------------------------
# the fluvial CLI


def fluvial_command() -> list[str]:
    """The argv prefix that runs the ``fluvial`` CLI of this interpreter's environment."""
    script = Path(sys.executable).parent / "fluvial"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fluvial.cli.main"]


def unique_name(prefix: str) -> str:
    """A valid, unique topic (or consumer) name: ``[a-z0-9-]``, at most 63 chars."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _pids_of(status: Any) -> list[int]:
    """Every ``pid`` found in a ``cluster status -O json`` document, whatever its nesting."""
    found: list[int] = []
    if isinstance(status, dict):
        pid = status.get("pid")
        if isinstance(pid, int) and pid > 0:
            found.append(pid)
        for value in status.values():
            if isinstance(value, dict | list):
                found.extend(_pids_of(value))
    elif isinstance(status, list):
        for item in status:
            found.extend(_pids_of(item))
    return found


def members_of(status: Any) -> list[dict[str, Any]]:
    """The member entries (dicts that carry a ``kind``) of a ``cluster status -O json`` document."""
    found: list[dict[str, Any]] = []
    if isinstance(status, dict):
        if "kind" in status:
            found.append(status)
        else:
            for value in status.values():
                found.extend(members_of(value))
    elif isinstance(status, list):
        for item in status:
            found.extend(members_of(item))
    return found


def member_is_up(member: dict[str, Any]) -> bool:
    """Interpret a member's liveness field (``up: true`` or ``status``/``state`` = ``"up"``)."""
    if isinstance(member.get("up"), bool):
        return member["up"]
    for key in ("status", "state"):
        value = member.get(key)
        if isinstance(value, str):
            return value.lower() in ("up", "running", "online")
    raise AssertionError(f"cluster status member has no up/down field: {member!r}")


_REAPER_SOURCE = """
import os, signal, sys, time
from fluvial.pids import is_fluvial_process, pid_alive
line = sys.stdin.readline()
if line.strip() == "done":
    sys.exit(0)
pids = [p for p in map(int, sys.argv[1:]) if is_fluvial_process(p)]
for pid in pids:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
deadline = time.monotonic() + 10
while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
    time.sleep(0.1)
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""


class _Reaper:
    """A child process that kills the given PIDs if this process dies before :meth:`disarm`.

    It reads one line from a pipe. ``done`` means "exit quietly"; end-of-file (our death) means "kill them".
    """

    def __init__(self, pids: list[int]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER_SOURCE, *map(str, pids)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    def disarm(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.write(b"done\n")
                self._proc.stdin.close()
        self._proc.wait(timeout=10)


@dataclass
class Cluster:
    """A fluvial cluster run through the CLI, as a user would.

    Attributes:
        home: the ``FLUVIAL_HOME`` of this cluster.
        spus: how many SPUs ``start`` asks for.
        endpoint: the SC's public ``host:port`` read from the written profile.
        config_path: ``$FLUVIAL_HOME/config``, the Fluvio profile file.
        start_output: stdout of the last ``start``/``resume``.
    """

    home: Path
    spus: int
    endpoint: str = ""
    start_output: str = ""
    known_pids: set[int] = field(default_factory=set)
    _reaper: _Reaper | None = None

    @property
    def config_path(self) -> Path:
        return self.home / "config"

    # ---- CLI

    def cli(self, *args: str, check: bool = True, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env["FLUVIAL_HOME"] = str(self.home)
        env.pop("FLUVIAL_CONFIG", None)  # the profile must land at $FLUVIAL_HOME/config
        proc = subprocess.run(
            [*fluvial_command(), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"`fluvial {' '.join(args)}` exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n--- logs\n{self.log_tail()}"
            )
        return proc

    def start(self) -> None:
        proc = self.cli("cluster", "start", "--spus", str(self.spus), "--sc-port", "0", "--spu-port", "0")
        self._after_up(proc)

    def resume(self) -> None:
        self._after_up(self.cli("cluster", "resume"))

    def shutdown(self) -> subprocess.CompletedProcess:
        return self.cli("cluster", "shutdown")

    def status(self) -> Any:
        proc = self.cli("cluster", "status", "-O", "json")
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            pytest.fail(f"`fluvial cluster status -O json` printed no JSON ({exc}):\n{proc.stdout}")

    def _after_up(self, proc: subprocess.CompletedProcess) -> None:
        self.start_output = proc.stdout
        self.endpoint = read_profile_endpoint(self.config_path)
        pids = _pids_of(self.status())
        self.known_pids.update(pids)
        if self._reaper is not None:
            self._reaper.disarm()
        self._reaper = _Reaper(sorted(self.known_pids))

    # ---- teardown

    def stop(self) -> None:
        """Graceful shutdown, then kill whatever of ours is still alive. Never raises."""
        self._collect_pids()  # a failed start may have left members that _after_up never saw
        try:
            self.cli("cluster", "shutdown", check=False, timeout_s=60)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in self.known_pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.known_pids:
                if pid_alive(pid) and is_fluvial_process(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while any(pid_alive(p) for p in self.known_pids) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self._reaper is not None:
            self._reaper.disarm()
            self._reaper = None

    def _collect_pids(self) -> None:
        try:
            proc = self.cli("cluster", "status", "-O", "json", check=False, timeout_s=30)
            self.known_pids.update(_pids_of(json.loads(proc.stdout)))
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            pass
        # A member spawned by a `start` that then failed is not in the status file; its command line still
        # names this (unique, temporary) home, since its data dir and ready file live under it.
        marker = str(self.home).encode() + b"/"
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    cmdline = (entry / "cmdline").read_bytes()
                    if marker in cmdline and b"fluvial" in cmdline:
                        self.known_pids.add(int(entry.name))

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of every ``*.log`` under the home, for failure messages."""
        chunks = []
        for path in sorted(self.home.rglob("*.log")):
            if path.is_file() and path.stat().st_size < 50_000_000:
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"== {path.relative_to(self.home)}\n" + "\n".join(text))
        return "\n".join(chunks) or "(no *.log files)"

    # ---- clients

    def config(self) -> fluvio.FluvioConfig:
        """A config for this cluster's endpoint, with verified mutual TLS when the cluster runs
        TLS (the default of `cluster start`): the certificates it minted under $FLUVIAL_HOME."""
        cfg = fluvio.FluvioConfig.new(self.endpoint)
        certs = self.home / "certs"
        if (certs / "ca.crt").exists():
            cfg.set_tls_file_paths("fluvial.local", str(certs / "client-admin.key"),
                                   str(certs / "client-admin.crt"), str(certs / "ca.crt"))
        return cfg

    def connect(self) -> fluvio.Fluvio:
        return fluvio.Fluvio.connect_with_config(self.config())

    def admin(self) -> fluvio.FluvioAdmin:
        return fluvio.FluvioAdmin.connect_with_config(self.config())


def read_profile_endpoint(config_path: Path) -> str:
    """The endpoint of the current profile's cluster in a Fluvio profile file."""
    assert config_path.is_file(), f"no profile written at {config_path}"
    doc = tomllib.loads(config_path.read_text())
    assert isinstance(doc.get("version"), str), f"profile `version` must be a string: {doc!r}"
    profile = doc["profile"][doc["current_profile"]]
    cluster = doc["cluster"][profile["cluster"]]
    return cluster.get("endpoint") or cluster["addr"]


@pytest.fixture(scope="session")
def _client_env() -> Iterator[None]:
    """Short client-side waits. The client reads these once per process, so they are set session-wide."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CLIENT_ENV.items():
            mp.setenv(key, value)
        yield


@contextlib.contextmanager
def running_cluster(home: Path, spus: int) -> Iterator[Cluster]:
    """Start a cluster under *home*, point ``FLV_PROFILE_PATH`` at its profile, and always stop it."""
    cluster = Cluster(home=home, spus=spus)
    try:
        with watchdog(CLI_TIMEOUT_S + 30, f"starting a {spus}-SPU cluster"):
            cluster.start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FLV_PROFILE_PATH", str(cluster.config_path))
            yield cluster
    finally:
        with watchdog(CLI_TIMEOUT_S + 30, "stopping the cluster"):
            cluster.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, _client_env: None) -> Iterator[Cluster]:
    """A 1-SPU cluster shared by the tests of one module."""
    with running_cluster(tmp_path_factory.mktemp("fluvial-home"), spus=1) as c:
        yield c


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory, _client_env: None) -> Iterator[Cluster]:
    """A 3-SPU cluster shared by the tests of one module."""
    with running_cluster(tmp_path_factory.mktemp("fluvial-home3"), spus=3) as c:
        yield c


# --------------------------------------------------------------------------------------------------------------
# client helpers


def error_text(exc: BaseException) -> str:
    return " ".join(str(a) for a in exc.args) or str(exc)


def create_topic(admin: fluvio.FluvioAdmin, name: str, partitions: int = 1, replication: int = 1) -> None:
    spec = fluvio.TopicSpec.create().with_partitions(partitions).with_replications(replication).build()
    admin.create_topic(name, spec)


def topic_names(admin: fluvio.FluvioAdmin) -> set[str]:
    return {t.name() for t in admin.all_topics()}


def consume(client: fluvio.Fluvio, topic: str, offset: fluvio.Offset | None = None, *,
            partitions: list[int] | None = None, disable_continuous: bool = True,
            max_bytes: int | None = None) -> fluvio.ConsumerIterator:
    """Open ``consumer_with_config`` with the usual knobs (the builder mutates in place)."""
    builder = fluvio.ConsumerConfigExtBuilder(topic)
    if offset is not None:
        builder.offset_start(offset)
    for p in partitions or []:
        builder.partition(p)
    if disable_continuous:
        builder.disable_continuous(True)
    if max_bytes is not None:
        builder.max_bytes(max_bytes)
    return client.consumer_with_config(builder.build())


def take(stream: Iterator[fluvio.Record], count: int) -> list[fluvio.Record]:
    """Exactly *count* records from a (continuous) stream; fails if it ends first."""
    out = []
    for _ in range(count):
        try:
            out.append(next(stream))
        except StopIteration:
            pytest.fail(f"stream ended after {len(out)} of {count} records")
    return out


def record_tuple(r: fluvio.Record) -> tuple[int, bytes, bytes]:
    return r.offset(), bytes(r.key()), bytes(r.value())


def produce_strings(client: fluvio.Fluvio, topic: str, values: list[str]) -> list[tuple[int, int]]:
    """``send_string`` each value, flush, and return ``(partition, offset)`` per record."""
    producer = client.topic_producer(topic)
    outputs = [producer.send_string(v) for v in values]
    producer.flush()
    metas = [o.wait() for o in outputs]
    return [(m.partition_id(), m.offset()) for m in metas]


def run_client_snippet(code: str, cluster: Cluster, timeout_s: float = 30.0) -> Any:
    """Run *code* in a fresh interpreter that has ``fluvio`` imported and ``ENDPOINT`` set, and return the JSON
    it prints on its last stdout line. Use it for calls that could block forever while holding the GIL."""
    prelude = ("import json, fluvio\nENDPOINT = %r\nCERTS = %r\n" % (cluster.endpoint, str(cluster.home / "certs"))
               + "def config():\n"
               + "    cfg = fluvio.FluvioConfig.new(ENDPOINT)\n"
               + "    import os\n"
               + "    if os.path.exists(CERTS + '/ca.crt'):\n"
               + "        cfg.set_tls_file_paths('fluvial.local', CERTS + '/client-admin.key', CERTS + '/client-admin.crt', CERTS + '/ca.crt')\n"
               + "    return cfg\n")
    env = dict(os.environ, FLV_PROFILE_PATH=str(cluster.config_path), **CLIENT_ENV)
    proc = subprocess.run([sys.executable, "-c", prelude + code], env=env, capture_output=True, text=True,
                          timeout=timeout_s, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"client snippet exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    assert lines, f"client snippet printed nothing; stderr:\n{proc.stderr}"
    return json.loads(lines[-1])


def start_producer_proc(cluster: Cluster, topic: str, count: int, *, prefix: str = "live",
                        key: str | None = None, flush_every: int = 0) -> subprocess.Popen:
    """Start ``producer_proc.py`` (official client, separate process) producing *count* records to *topic*."""
    args = [sys.executable, str(PRODUCER_PROC), "--endpoint", cluster.endpoint,
            "--certs", str(cluster.home / "certs"), "--topic", topic,
            "--count", str(count), "--prefix", prefix]
    if key is not None:
        args += ["--key", key]
    if flush_every:
        args += ["--flush-every", str(flush_every)]
    env = dict(os.environ, **CLIENT_ENV)
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish_producer_proc(proc: subprocess.Popen, timeout_s: float = 60.0) -> list[dict[str, int]]:
    """Wait for ``producer_proc.py`` and return its per-record ``{"partition", "offset"}`` report."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"producer_proc.py did not finish in {timeout_s} s\n--- stderr\n{err}")
    if proc.returncode != 0:
        pytest.fail(f"producer_proc.py exited {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}")
    return json.loads(out.strip().splitlines()[-1])
