"""`fluvial gateway` refuses bad flags with a clear message (exit 2) before touching the network."""

from __future__ import annotations

import subprocess

import pytest

from harness.processes import fluvial_command


def exits_2_saying(args: list[str], message: str, home) -> None:
    """``fluvial -c <nowhere> ARGS`` exits 2 with ``message``, without a cluster to talk to."""
    proc = subprocess.run([*fluvial_command(), "-c", "127.0.0.1:1", *args],
                          capture_output=True, text=True, timeout=60,
                          env={"FLUVIAL_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


@pytest.mark.parametrize("flags,message", [
    (["--auth-function", "no_colon"], "pkg.module:function"),
    (["--on-join", "no.such.module:fn"], "cannot import"),
    (["--on-leave", "os:no_such_function"], "is not a function"),
    (["--tls-dir", "/nonexistent-dir"], "--tls-dir"),
    (["--port", "-1"], "Invalid value"),
])
def test_bad_gateway_flags_exit_2(flags, message, tmp_path):
    exits_2_saying(["gateway", *flags], message, tmp_path)


@pytest.mark.parametrize("args,message", [
    (["set", "s", "", "i", "1"], "group must be a non-empty string"),
    (["get", "s", "g", "x" * 300], "longer than"),
    (["list", "", "g"], "stream name"),
    (["set", "s", "g", "i", "{bad"], "not JSON"),
    (["send", "s", "g", "ev", "[1,"], "not JSON"),
])
def test_bad_stream_arguments_exit_2(args, message, tmp_path):
    exits_2_saying(["stream", *args], message, tmp_path)


def test_the_gateway_serves_tls_with_the_cluster_certificates_when_the_profile_does(tmp_path, monkeypatch):
    from fluvial.cli.gateway import cluster_certificates
    from fluvial.client import profile as prof
    from fluvial.tls_certs import mint_cluster_certs

    certs = mint_cluster_certs(tmp_path / "certs", "fluvial.local", spu_names=())
    config = tmp_path / "config"
    monkeypatch.setenv("FLUVIAL_CONFIG", str(config))
    cfg = prof.load_config(config)
    cfg.add_profile("tls", "127.0.0.1:9003", prof.TlsVerified(
        "fluvial.local", str(certs["client_admin_key"]), str(certs["client_admin_cert"]),
        str(certs["ca_cert"])), set_current=True)
    cfg.add_profile("plain", "127.0.0.1:9003", None)
    prof.save_config(cfg, config)
    args = {"endpoint": None, "tls": None}
    assert cluster_certificates({**args, "profile": "tls"}) == tmp_path / "certs"
    assert cluster_certificates({**args, "profile": "plain"}) is None
    assert cluster_certificates({**args, "profile": "missing"}) is None
    (tmp_path / "certs" / "server.key").unlink()
    assert cluster_certificates({**args, "profile": "tls"}) is None
