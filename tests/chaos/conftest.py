"""Fixtures for the failure tests (issue core-4): a real cluster of background processes.

Rules of this suite
-------------------
* A cluster is started as users start one, ``fluvial cluster start --spus 3`` in a temporary
  ``FLUVIAL_HOME`` with OS-chosen ports, a 2 s heartbeat timeout and a 2 s replica lag time, so
  that failures are detected quickly.
* Faults go only to the PIDs this cluster started (``ProcessCluster.kill/pause``). Teardown runs
  ``fluvial cluster shutdown`` and then SIGKILLs whatever of ours is still alive.
* SIGKILL keeps the page cache, so it cannot show a missing fsync. The tests that kill SPUs run
  twice: ``[kill-9]`` and ``[power-<mode>]``, power-loss mode, where killing an SPU also cuts its
  segment files back to what it fsynced (``<mode>``: cut, torn or reordered unsynced pages; see
  ``harness.processes``). Parametrize the ``cluster`` fixture indirectly with those ids
  (``kill-9``, ``power-cut``, ``power-torn``, ``power-reorder``); without a parameter it is
  ``kill-9``. Other cluster shapes come from ``make_cluster(spus, mode)``. The cuts are seeded:
  ``FLUVIAL_CHAOS_SEED`` (default 0) replays another sequence, and a failure message names the
  cluster (home, mode, seed) and its ``power_cuts``. Power-loss variants may run fewer rounds
  than their kill -9 twins: the whole directory stays under about 4 minutes on 2 cores.
* A test that needs a network partition runs in-process (``harness.cluster`` with
  ``proxied=True``): every SPU reaches the SC, and its followers reach it, through a
  ``harness.proxy.TcpProxy`` the test cuts and heals; clients are never proxied.
* Every test is bounded with ``trio.fail_after``; waits poll a condition under a deadline.
* On failure the message names the cluster's home: its ``logs/`` hold every member's log and
  ``data/`` every replica. pytest keeps only the temporary directories of its last few runs; set
  ``FLUVIAL_CHAOS_KEEP=<dir>`` to have the home of every failed test copied there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import POWER_LOSS_MODES, ProcessCluster


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


KILL_9 = "kill-9"


def cluster_kwargs(param: str) -> dict:
    """``ProcessCluster`` arguments for a fixture parameter (``kill-9`` or ``power-<mode>``)."""
    if param == KILL_9:
        return {}
    mode = param.removeprefix("power-")
    if mode not in POWER_LOSS_MODES:
        raise ValueError(f"unknown cluster parameter {param!r}")
    return {"power_loss": True, "power_loss_mode": mode,
            "seed": int(os.environ.get("FLUVIAL_CHAOS_SEED", "0"))}


@pytest.fixture
def make_cluster(request, tmp_path) -> Iterator:
    """``make_cluster(spus=3, mode="kill-9")``: start a process cluster (2 s heartbeat timeout
    and replica lag time); every cluster made is stopped after the test."""
    made: list[ProcessCluster] = []

    def make(spus: int = 3, mode: str = KILL_9) -> ProcessCluster:
        c = ProcessCluster(tmp_path / f"home{len(made) or ''}", spus=spus, heartbeat_timeout=2.0,
                           replica_lag_time_max=2.0, **cluster_kwargs(mode))
        made.append(c)
        c.start()
        return c

    try:
        yield make
    finally:
        keep = os.environ.get("FLUVIAL_CHAOS_KEEP")
        failed = request.node.stash.get(_FAILED, True)
        for c in made:
            c.close()
            if keep and failed:
                dest = Path(keep) / request.node.name / c.home.name
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(c.home, dest, dirs_exist_ok=True)


@pytest.fixture
def cluster(request, make_cluster) -> ProcessCluster:
    """A running 3-SPU process cluster: ``kill-9`` (the default) or ``power-<mode>`` by indirect
    parametrization."""
    return make_cluster(3, getattr(request, "param", KILL_9))
