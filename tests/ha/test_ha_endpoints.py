"""Several SC endpoints on the client side, and the flags of the HA commands. No etcd needed."""

from __future__ import annotations

import pytest
import trio
from typer.testing import CliRunner

import fluvial
from fluvial.cli.main import app
from fluvial.client import profile
from fluvial.errors import ConfigError
from fluvial.sc import etcd_local
from harness.cluster import open_test_cluster


async def _dead_port() -> int:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there now
    return port


async def test_the_client_moves_on_to_the_next_sc_endpoint(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path / "cluster", spus=1) as cluster:
            dead = await _dead_port()
            async with fluvial.connect(endpoint=f"127.0.0.1:{dead},{cluster.endpoint}") as fl:
                assert fl.cluster.endpoints == (f"127.0.0.1:{dead}", cluster.endpoint)
                assert [s.id for s in await fl.admin.list_spus()] == [5001]
            with pytest.raises(fluvial.ConnectionLost):  # every endpoint tried once, then the error
                async with fluvial.connect(endpoint=f"127.0.0.1:{dead},127.0.0.1:{dead}"):
                    pass


def test_a_profile_keeps_more_endpoints_and_resolves_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path))
    monkeypatch.delenv("FLUVIAL_CONFIG", raising=False)
    cfg = profile.load_config()
    cfg.add_profile("ha", "127.0.0.1:1", more_endpoints=("127.0.0.1:2", "127.0.0.1:3"))
    profile.save_config(cfg)
    text = (tmp_path / "config").read_text()
    assert 'endpoint = "127.0.0.1:1"' in text  # what Fluvio's client reads
    resolved = profile.resolve_endpoint("ha")
    assert resolved.endpoints == ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
    cfg = profile.load_config()
    cfg.add_profile("ha", "127.0.0.1:1")  # replaced without more: the key goes
    profile.save_config(cfg)
    assert profile.resolve_endpoint("ha").endpoints == ("127.0.0.1:1",)
    with pytest.raises(ConfigError):
        profile.resolve_endpoint(endpoint="127.0.0.1:1,nohost")


@pytest.mark.parametrize("args, message", [
    (["run", "sc", "--data-dir", "d", "--metadata", "zk://h:1"], "--metadata must be etcd://"),
    (["run", "sc", "--data-dir", "d", "--metadata", "etcd://h"], "host:port"),
    (["run", "sc", "--data-dir", "d", "--metadata", "etcd://h:1", "--controller-lease", "0.5"], "at least 1 second"),
    (["run", "spu", "--id", "1", "--data-dir", "d", "--sc", "h:1,h"], "--sc must be host:port"),
    (["cluster", "start", "--sc", "3"], "add --etcd"),
])
def test_bad_ha_flags_are_clear_errors(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output, result.output


def test_a_missing_etcd_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(etcd_local.shutil, "which", lambda name: None)
    monkeypatch.setattr(etcd_local.os.path, "exists", lambda path: False)
    with pytest.raises(etcd_local.EtcdMissing, match="etcd-server"):
        etcd_local.etcd_binary()


def test_cluster_start_without_etcd_says_which_package(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path))
    monkeypatch.setattr(etcd_local.shutil, "which", lambda name: None)
    monkeypatch.setattr(etcd_local.os.path, "exists", lambda path: False)
    result = CliRunner().invoke(app, ["cluster", "start", "--sc", "3", "--etcd", "--no-tls"])
    assert result.exit_code == 1
    assert "etcd-server" in result.output, result.output
