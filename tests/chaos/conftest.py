"""Fixtures for the failure tests (issue core-4): a real cluster of background processes.

Rules of this suite
-------------------
* A cluster is started as users start one, ``fluvial cluster start --spus 3`` in a temporary
  ``FLUVIAL_HOME`` with OS-chosen ports, a 2 s heartbeat timeout and a 2 s replica lag time, so
  that failures are detected quickly.
* Faults go only to the PIDs this cluster started (``ProcessCluster.kill/pause``). Teardown runs
  ``fluvial cluster shutdown`` and then SIGKILLs whatever of ours is still alive.
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

from fluvial.testing.chaos import ProcessCluster


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def cluster(request, tmp_path) -> Iterator[ProcessCluster]:
    """A running 3-SPU process cluster, stopped after the test."""
    c = ProcessCluster(tmp_path / "home", spus=3, heartbeat_timeout=2.0, replica_lag_time_max=2.0)
    try:
        c.start()
        yield c
    finally:
        c.close()
        keep = os.environ.get("FLUVIAL_CHAOS_KEEP")
        if keep and request.node.stash.get(_FAILED, True):
            dest = Path(keep) / request.node.name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(c.home, dest, dirs_exist_ok=True)
