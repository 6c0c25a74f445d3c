"""A live ``fluvial consume`` in a real terminal (tmux): it says what it is reading, shows the
records produced meanwhile, and Ctrl-C ends it with exit code 0.

tmux runs on a private socket under ``tmp_path`` (so it cannot touch another tmux server) and is
killed at the end. Skipped where tmux is not installed (Debian: ``apt-get install tmux``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time

import pytest

DEADLINE_SECONDS = 30

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, socket_path):
        self.socket = str(socket_path)

    def __call__(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                                timeout=DEADLINE_SECONDS)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-t", "live")

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            assert time.monotonic() < deadline, f"{text!r} did not appear; the screen:\n{screen}"
            time.sleep(0.05)


def run_in_tmux(c, tmp_path, *args: str):
    """Start ``fluvial ARGS`` in a detached tmux pane; returns (tmux, exit-code file).

    Ctrl-C goes to the pane's whole foreground process group: the shell traps it (as an
    interactive shell would not see it at all) so that it lives on to record the exit code.
    """
    rc_file = tmp_path / "exit-code"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in
                   (("FLUVIAL_HOME", str(c.home)), ("NO_COLOR", "1"), ("TERM", "xterm")))
    command = (f"trap true INT; env {env} {shlex.quote(str(c.script))} "
               + " ".join(shlex.quote(a) for a in args)
               + f"; echo $? > {shlex.quote(str(rc_file))}; sleep 600")
    tmux = Tmux(tmp_path / "tmux.sock")
    tmux("new-session", "-d", "-s", "live", "-x", "160", "-y", "40", "sh", "-c", command)
    return tmux, rc_file


def exit_code_after_ctrl_c(tmux, rc_file, deadline: float) -> str:
    tmux("send-keys", "-t", "live", "C-c")
    while not (rc_file.exists() and rc_file.read_text().strip()):
        assert time.monotonic() < deadline, f"the command did not exit:\n{tmux.screen()}"
        time.sleep(0.05)
    return rc_file.read_text().strip()


def kill_tmux(tmp_path) -> None:
    subprocess.run(["tmux", "-S", str(tmp_path / "tmux.sock"), "kill-server"],
                   capture_output=True, timeout=DEADLINE_SECONDS)


def test_live_consume_shows_new_records_and_exits_0_on_ctrl_c(local_cluster, tmp_path):
    c = local_cluster
    name = f"tmux-{os.getpid()}"
    assert c.run("topic", "create", name).returncode == 0
    tmux, rc_file = run_in_tmux(c, tmp_path, "consume", name)
    try:
        tmux.wait_for(f"Consuming records from '{name}'")  # on stderr, as stdout is a terminal
        produced = c.run("produce", name, input=b"hello from the other side\nsecond record\n")
        assert produced.returncode == 0, produced.stderr.decode()
        screen = tmux.wait_for("second record")
        assert screen.index("hello from the other side") < screen.index("second record")
        assert exit_code_after_ctrl_c(tmux, rc_file, time.monotonic() + DEADLINE_SECONDS) == "0"
        assert "Traceback" not in tmux.screen()
    finally:
        kill_tmux(tmp_path)


def test_interactive_produce_sends_each_line_at_once_and_ctrl_c_exits_130(local_cluster, tmp_path):
    c = local_cluster
    name = f"tmux-typed-{os.getpid()}"
    assert c.run("topic", "create", name).returncode == 0
    tmux, rc_file = run_in_tmux(c, tmp_path, "produce", name)
    try:
        tmux("send-keys", "-t", "live", "typed at a terminal", "Enter")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:  # stored while produce still waits for more input
            consumed = c.run("consume", name, "-B", "-d")
            if consumed.stdout == b"typed at a terminal\n":
                break
            assert time.monotonic() < deadline, f"the line was not sent:\n{tmux.screen()}"
            time.sleep(0.05)
        assert not rc_file.exists()
        assert exit_code_after_ctrl_c(tmux, rc_file, deadline) == "130"
        screen = tmux.screen()
        assert "Fatal Python error" not in screen and "Traceback" not in screen
    finally:
        kill_tmux(tmp_path)
