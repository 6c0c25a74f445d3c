"""fluvial.pids: a running process is alive, a zombie or a reaped one is not; a fluvial command line is recognised."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from fluvial.pids import is_fluvial_process, pid_alive


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1][:1]


def test_a_child_is_alive_until_it_is_a_zombie_and_fluvial_by_its_command_line():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()", "fluvial"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"  # exec'd: /proc shows its own command line
        assert pid_alive(child.pid)
        assert is_fluvial_process(child.pid)
        child.stdin.close()  # it exits; unreaped, it stays a zombie
        deadline = time.monotonic() + 10
        while _state(child.pid) != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert not pid_alive(child.pid)
    assert not is_fluvial_process(child.pid)


def test_no_pid_is_not_alive_and_this_process_is():
    assert not pid_alive(None)
    assert not pid_alive(0)
    assert pid_alive(os.getpid())
