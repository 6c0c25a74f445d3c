"""`fluvial gateway` refuses bad flags with a clear message (exit 2) before touching the network."""

from __future__ import annotations

import subprocess

import pytest

from harness.processes import fluvial_command


@pytest.mark.parametrize("flags,message", [
    (["--auth-function", "no_colon"], "pkg.module:function"),
    (["--on-join", "no.such.module:fn"], "cannot import"),
    (["--on-leave", "os:no_such_function"], "is not a function"),
    (["--tls-dir", "/nonexistent-dir"], "--tls-dir"),
    (["--port", "-1"], "Invalid value"),
])
def test_bad_gateway_flags_exit_2(flags, message, tmp_path):
    proc = subprocess.run([*fluvial_command(), "-c", "127.0.0.1:1", "gateway", *flags],
                          capture_output=True, text=True, timeout=60,
                          env={"FLUVIAL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["set", "s", "", "i", "1"], "group must be a non-empty string"),
    (["get", "s", "g", "x" * 300], "longer than"),
    (["list", "", "g"], "stream name"),
    (["set", "s", "g", "i", "{bad"], "not JSON"),
    (["send", "s", "g", "ev", "[1,"], "not JSON"),
])
def test_bad_stream_arguments_exit_2(args, message, tmp_path):
    proc = subprocess.run([*fluvial_command(), "-c", "127.0.0.1:1", "stream", *args],
                          capture_output=True, text=True, timeout=60,
                          env={"FLUVIAL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
