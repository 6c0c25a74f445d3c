"""Fixtures for the CLI tests: a real local cluster started with ``fluvial cluster start`` (an SC
and one SPU as background processes, TLS on, under a temporary ``FLUVIAL_HOME``), the installed
``fluvial`` console script to drive it, and a ``CliRunner`` pointed at the same home.

Rules: the cluster binds port 0 everywhere; it is stopped with ``fluvial cluster shutdown`` when
the session ends, and only the PIDs it recorded are killed as a last resort; nothing sleeps to
synchronise (tests poll with a deadline).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluvial.cli.main import app

START_TIMEOUT_SECONDS = 90
COMMAND_TIMEOUT_SECONDS = 60

_names = itertools.count()


def topic_name(prefix: str = "cli") -> str:
    """A fresh, valid topic name."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def fluvial_script() -> Path:
    """The installed ``fluvial`` console script (beside this interpreter)."""
    return Path(sys.executable).with_name("fluvial")


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLUVIAL_CONFIG", "FORCE_COLOR")}
    env.update(FLUVIAL_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    return env


@pytest.fixture
def fresh_topic():
    """``fresh_topic()`` -> a topic name no other test uses."""
    return topic_name


@dataclass
class LocalCluster:
    home: Path
    env: dict[str, str]
    script: Path

    def run(self, *args: str, input: bytes | None = None,
            timeout: float = COMMAND_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
        """``fluvial ARGS`` as a subprocess; stdout and stderr captured as bytes."""
        return subprocess.run([str(self.script), *args], input=input if input is not None else b"",
                              capture_output=True, env=self.env, timeout=timeout)

    def invoke(self, *args: str, input: bytes | str | None = None):
        """``fluvial ARGS`` in this process, through typer's ``CliRunner``."""
        runner = CliRunner()
        return runner.invoke(app, list(args), input=input,
                             env={"FLUVIAL_HOME": str(self.home), "FLUVIAL_CONFIG": None,
                                  "NO_COLOR": "1", "COLUMNS": "200"})

    @property
    def endpoint(self) -> str:
        status = json.loads(self.run("cluster", "status", "-O", "json").stdout)
        return f"127.0.0.1:{status[0]['public_port']}"


def _kill_recorded(cluster: LocalCluster) -> None:
    """Last resort: SIGKILL the members ``cluster status`` still reports as up."""
    try:
        rows = json.loads(cluster.run("cluster", "status", "-O", "json", timeout=30).stdout)
    except (ValueError, subprocess.SubprocessError):
        return
    for row in rows:
        if row.get("up") and row.get("pid"):
            try:
                os.kill(int(row["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory) -> LocalCluster:
    script = fluvial_script()
    if not script.exists():
        pytest.skip(f"the fluvial console script is not installed beside {sys.executable}")
    home = tmp_path_factory.mktemp("fluvial-home")
    cluster = LocalCluster(home, cli_env(home), script)
    started = cluster.run("cluster", "start", "--spus", "1", "--sc-port", "0",
                          timeout=START_TIMEOUT_SECONDS)
    try:
        assert started.returncode == 0, started.stderr.decode()
        yield cluster
    finally:
        try:
            cluster.run("cluster", "shutdown", "--timeout", "10", timeout=60)
        finally:
            _kill_recorded(cluster)  # whatever did not stop
