"""``fluvial profile ...`` through CliRunner, on a profile file in a temporary FLUVIAL_HOME."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from fluvial.cli.main import app
from fluvial.cli.topic import parse_yaml
from fluvial.client import profile as prof
from fluvial.tls_certs import mint_cluster_certs

runner = CliRunner()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def cli(home, *args: str):
    return runner.invoke(app, list(args), env={"FLUVIAL_HOME": str(home), "FLUVIAL_CONFIG": None,
                                               "NO_COLOR": "1", "COLUMNS": "200"})


def test_add_list_switch_rename_delete(home):
    assert cli(home, "profile", "add", "one", "127.0.0.1:9003").exit_code == 0
    result = cli(home, "profile", "add", "two", "10.0.0.2:9003", "--no-switch")
    assert result.exit_code == 0, result.output
    assert cli(home, "profile", "current").stdout == "one\n"

    table = cli(home, "profile", "list").stdout.splitlines()
    assert table[0].split() == ["PROFILE", "CLUSTER", "ENDPOINT", "TLS"]
    assert table[1].split() == ["*", "one", "one", "127.0.0.1:9003", "disabled"]
    assert table[2].split() == ["two", "two", "10.0.0.2:9003", "disabled"]

    assert cli(home, "profile", "switch", "two").exit_code == 0
    assert cli(home, "profile", "current").stdout == "two\n"
    assert cli(home, "profile", "rename", "two", "prod").exit_code == 0
    rows = json.loads(cli(home, "profile", "list", "-O", "json").stdout)
    assert rows == [
        {"name": "one", "current": False, "cluster": "one", "endpoint": "127.0.0.1:9003",
         "tls": "disabled", "domain": None},
        {"name": "prod", "current": True, "cluster": "prod", "endpoint": "10.0.0.2:9003",
         "tls": "disabled", "domain": None},
    ]
    assert parse_yaml(cli(home, "profile", "list", "-O", "yaml").stdout) == rows

    result = cli(home, "profile", "delete", "prod")
    assert result.exit_code == 0
    assert "no profile is selected now" in result.stderr
    result = cli(home, "profile", "current")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no profile is selected")
    assert [e.name for e in prof.list_profiles(home / "config")] == ["one"]


def test_errors_name_the_profiles_there_are(home):
    cli(home, "profile", "add", "one", "127.0.0.1:9003")
    result = cli(home, "profile", "switch", "nope")
    assert result.exit_code == 1
    assert "no profile named 'nope'; known: one" in result.stderr
    result = cli(home, "profile", "add", "bad", "no-port")
    assert result.exit_code == 1
    assert "has no port" in result.stderr
    result = cli(home, "profile", "rename", "one", "one2")
    assert result.exit_code == 0
    result = cli(home, "profile", "list")
    assert "one2" in result.stdout


def test_empty_list_says_how_to_get_a_profile(home):
    result = cli(home, "profile", "list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "fluvial cluster start" in result.stderr
    assert json.loads(cli(home, "profile", "list", "-O", "json").stdout) == []


def test_add_with_tls_and_export_inlines_the_certificates(home, tmp_path):
    certs = tmp_path / "certs"
    mint_cluster_certs(certs, "fluvial.test", spu_names=["custom-spu-5001"], client_cns=("admin",))
    result = cli(home, "profile", "add", "secure", "127.0.0.1:9003", "--domain", "fluvial.test",
                 "--ca-cert", str(certs / "ca.crt"), "--client-cert", str(certs / "client-admin.crt"),
                 "--client-key", str(certs / "client-admin.key"))
    assert result.exit_code == 0, result.output
    rows = json.loads(cli(home, "profile", "list", "-O", "json").stdout)
    assert rows[0]["tls"] == "verified" and rows[0]["domain"] == "fluvial.test"

    exported = cli(home, "profile", "export")
    assert exported.exit_code == 0
    doc = tomllib.loads(exported.stdout)
    assert doc["current_profile"] == "secure"
    tls = doc["cluster"]["secure"]["tls"]
    assert tls["tls_source"] == "inline"
    assert tls["certs"]["ca_cert"] == (certs / "ca.crt").read_text()
    # the export is a profile file of its own
    copy = tmp_path / "exported.toml"
    copy.write_text(exported.stdout)
    assert prof.load_config(copy).resolve().endpoint == "127.0.0.1:9003"


def test_add_with_anonymous_tls_and_missing_certificate_files(home, tmp_path):
    assert cli(home, "profile", "add", "anon", "127.0.0.1:9003", "--tls").exit_code == 0
    assert json.loads(cli(home, "profile", "list", "-O", "json").stdout)[0]["tls"] == "anonymous"
    result = cli(home, "profile", "add", "x", "127.0.0.1:9003", "--domain", "d",
                 "--ca-cert", str(tmp_path / "missing.crt"), "--client-cert", str(tmp_path / "a"),
                 "--client-key", str(tmp_path / "b"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
