"""``fluvial cluster start --processors``: the cluster runs its processors, restarts a runtime
killed with -9, and ``cluster shutdown`` stops them all."""

from __future__ import annotations

import json
import os
import signal
import time

from cli.conftest import LocalCluster, cli_env, fluvial_script
from fluvial.pids import pid_alive


def _poll(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_cluster_start_supervises_processors(tmp_path):
    home = tmp_path / "home"
    c = LocalCluster(home, cli_env(home), fluvial_script())
    fns = tmp_path / "fns"
    fns.mkdir()
    (fns / "supfn.py").write_text("def shout(value):\n    return value.upper()\n")
    started = c.run("cluster", "start", "--spus", "1", "--sc-port", "0", "--no-tls", "--processors", timeout=90)
    assert started.returncode == 0, started.stderr.decode()
    pids = []
    try:
        for t in ("sup-in", "sup-out"):
            assert c.run("topic", "create", t).returncode == 0
        assert c.run("processor", "create", "shout", "--function", "supfn:shout", "--input", "sup-in",
                     "--output", "sup-out", "--window-count", "1", "--path", str(fns)).returncode == 0

        def running_pid():
            d = json.loads(c.run("processor", "describe", "shout", "-O", "json").stdout)
            return d["state"] == "Running" and d["pid"] not in (None, *pids) and d["pid"]

        pids.append(_poll("the first runtime", running_pid))
        assert c.run("produce", "sup-in", input=b"a\n").returncode == 0
        _poll("the first output", lambda: c.run("consume", "sup-out", "-B", "-d").stdout == b"A\n")
        os.kill(pids[0], signal.SIGKILL)
        pids.append(_poll("a restarted runtime", running_pid))
        assert c.run("produce", "sup-in", input=b"b\n").returncode == 0
        _poll("the output after the restart", lambda: c.run("consume", "sup-out", "-B", "-d").stdout == b"A\nB\n")
    finally:
        c.run("cluster", "shutdown", "--timeout", "10", timeout=60)
    _poll("every runtime stopped", lambda: not any(pid_alive(p) for p in pids), timeout=15)
