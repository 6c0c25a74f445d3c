"""Profiles: Fluvio's TOML schema, every operation and error, file location, and the official client."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import struct
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fluvial.client import profile as prof
from fluvial.client.profile import (
    Cluster,
    Config,
    Profile,
    ResolvedCluster,
    TlsAnonymous,
    TlsDisabled,
    TlsVerified,
)
from fluvial.errors import ConfigError
from fluvial.tls_certs import CA, mint_cluster_certs

MINIMAL = """\
version = "2.0"
current_profile = "local"

[profile.local]
cluster = "local"

[cluster.local]
endpoint = "127.0.0.1:9003"
"""

VERIFIED_FILES = """\
version = "2.0"
current_profile = "local"

[profile.local]
cluster = "local"

[cluster.local]
endpoint = "127.0.0.1:9003"

[cluster.local.tls]
tls_policy = "verified"
tls_source = "files"

[cluster.local.tls.certs]
domain = "fluvio.local"
key = "certs/client.key"
cert = "certs/client.crt"
ca_cert = "certs/ca.crt"
"""

FILES_TLS = TlsVerified("fluvio.local", "certs/client.key", "certs/client.crt", "certs/ca.crt")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test may touch the real home directory's profile."""
    monkeypatch.delenv("FLUVIAL_CONFIG", raising=False)
    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path / "home"))


@pytest.fixture
def cfg_path(tmp_path) -> Path:
    return tmp_path / "config"


def two_profiles(path: Path) -> None:
    prof.add_profile("a", "127.0.0.1:9003", path=path)
    prof.add_profile("b", "10.0.0.2:9003", TlsAnonymous(), path=path)


# ---------------------------------------------------------------------------------------------
# Location


def test_default_location_is_home_dot_fluvial(monkeypatch, tmp_path):
    monkeypatch.delenv("FLUVIAL_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert prof.fluvial_home() == tmp_path / "me" / ".fluvial"
    assert prof.config_path() == tmp_path / "me" / ".fluvial" / "config"


def test_fluvial_home_moves_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path / "h"))
    assert prof.config_path() == tmp_path / "h" / "config"


def test_fluvial_config_beats_fluvial_home_and_explicit_path_beats_both(monkeypatch, tmp_path):
    monkeypatch.setenv("FLUVIAL_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("FLUVIAL_CONFIG", str(tmp_path / "c.toml"))
    assert prof.config_path() == tmp_path / "c.toml"
    assert prof.config_path(tmp_path / "x") == tmp_path / "x"


def test_empty_env_vars_count_as_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("FLUVIAL_CONFIG", "")
    monkeypatch.setenv("FLUVIAL_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert prof.config_path() == tmp_path / ".fluvial" / "config"


def test_operations_follow_the_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("FLUVIAL_CONFIG", str(tmp_path / "env.toml"))
    prof.add_profile("local", "127.0.0.1:9003")
    assert (tmp_path / "env.toml").read_text() == MINIMAL
    assert not (tmp_path / "home").exists()
    assert prof.current_profile() == "local"
    assert prof.resolve_endpoint() == ResolvedCluster("127.0.0.1:9003", TlsDisabled(), profile="local")


# ---------------------------------------------------------------------------------------------
# Writing Fluvio's schema, exactly


def test_minimal_profile_is_written_as_fluvio_writes_it(cfg_path):
    prof.add_profile("local", "127.0.0.1:9003", path=cfg_path)
    assert cfg_path.read_text() == MINIMAL


def test_verified_files_profile_uses_tls_and_certs_tables(cfg_path):
    prof.add_profile("local", "127.0.0.1:9003", FILES_TLS, path=cfg_path)
    assert cfg_path.read_text() == VERIFIED_FILES


def test_anonymous_profile(cfg_path):
    prof.add_profile("local", "127.0.0.1:9003", TlsAnonymous(), path=cfg_path)
    assert cfg_path.read_text() == MINIMAL + '\n[cluster.local.tls]\ntls_policy = "anonymous"\n'


def test_inline_pem_is_written_as_multiline_strings(cfg_path):
    pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    tls = TlsVerified("fluvio.local", pem, "CERT\n", "CA\n", source="inline")
    prof.add_profile("local", "127.0.0.1:9003", tls, path=cfg_path)
    text = cfg_path.read_text()
    assert 'tls_source = "inline"' in text
    assert 'key = """\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"""' in text
    assert prof.load_config(cfg_path).clusters["local"].tls == tls


def test_use_spu_local_address_written_only_when_true(cfg_path):
    prof.add_profile("local", "127.0.0.1:9003", use_spu_local_address=True, path=cfg_path)
    assert "use_spu_local_address = true" in cfg_path.read_text()
    assert prof.resolve_endpoint(path=cfg_path).use_spu_local_address is True


def test_names_that_are_not_bare_keys_are_quoted(cfg_path):
    prof.add_profile("prod.eu 1", "h:1", path=cfg_path)
    assert '[profile."prod.eu 1"]' in cfg_path.read_text()
    assert prof.load_config(cfg_path).profiles == {"prod.eu 1": Profile("prod.eu 1")}


# ---------------------------------------------------------------------------------------------
# Reading


def test_round_trip_keeps_everything(cfg_path):
    cfg = Config(
        current_profile="b",
        profiles={"a": Profile("ca", topic="t", partition=2), "b": Profile("cb")},
        clusters={
            "ca": Cluster("h1:1", use_spu_local_address=True, tls=FILES_TLS),
            "cb": Cluster("h2:2", tls=TlsVerified("d", "K\n", "C\n", "CA\n", source="inline")),
        },
    )
    prof.save_config(cfg, cfg_path)
    loaded = prof.load_config(cfg_path)
    assert loaded == cfg
    assert loaded.path == cfg_path
    assert Config.from_toml(loaded.to_toml()) == cfg


def test_unknown_keys_are_preserved(cfg_path):
    cfg_path.write_text(textwrap.dedent("""\
        version = "2.0"
        current_profile = "x"
        client_id = "me"

        [profile.x]
        cluster = "x"
        colour = "blue"

        [cluster.x]
        endpoint = "h:1"
        future = 1

        [cluster.x.metadata.installation]
        type = "local"

        [cluster.x.tls]
        tls_policy = "verified"
        tls_source = "files"
        pinned = true

        [cluster.x.tls.certs]
        domain = "d"
        key = "k"
        cert = "c"
        ca_cert = "a"
        passphrase_hint = "none"
        """))
    cfg = prof.load_config(cfg_path)
    assert cfg.extra == {"client_id": "me"}
    assert cfg.profiles["x"].extra == {"colour": "blue"}
    assert cfg.clusters["x"].extra == {"future": 1, "metadata": {"installation": {"type": "local"}}}
    assert cfg.clusters["x"].tls.extra == {"pinned": True}
    assert cfg.clusters["x"].tls.certs_extra == {"passphrase_hint": "none"}
    prof.switch_profile("x", path=cfg_path)  # a load + save cycle
    again = prof.load_config(cfg_path)
    assert again.to_dict() == cfg.to_dict()


def test_fluvio_aliases_are_accepted_and_written_back_canonically(cfg_path):
    cfg_path.write_text(textwrap.dedent("""\
        version = "1.0"
        current_profile = "a"
        [profile.a]
        cluster = "a"
        [profile.b]
        cluster = "b"
        [profile.c]
        cluster = "c"
        [cluster.a]
        addr = "h:1"
        tls = { tls_policy = "disable" }
        [cluster.b]
        addr = "h:2"
        [cluster.b.tls]
        tls_policy = "verify"
        tls_source = "file"
        certs = { domain = "d", key = "k", cert = "c", ca_cert = "a" }
        [cluster.c]
        endpoint = "h:3"
        tls = { tls_policy = "anonymous" }
        """))
    cfg = prof.load_config(cfg_path)
    assert cfg.version == "1.0"
    assert cfg.clusters["a"] == Cluster("h:1", tls=TlsDisabled())
    assert cfg.clusters["b"] == Cluster("h:2", tls=TlsVerified("d", "k", "c", "a", source="files"))
    assert cfg.clusters["c"] == Cluster("h:3", tls=TlsAnonymous())
    text = cfg.to_toml()
    assert 'endpoint = "h:1"' in text and "addr" not in text
    assert 'tls_policy = "verified"' in text and 'tls_source = "files"' in text
    assert 'tls_policy = "disable"' not in text


def test_missing_file_is_an_empty_config(cfg_path):
    cfg = prof.load_config(cfg_path)
    assert cfg == Config()
    assert cfg.version == "2.0" and cfg.profiles == {} and cfg.current_profile is None
    assert prof.list_profiles(path=cfg_path) == []
    assert prof.current_profile(path=cfg_path) is None
    assert not cfg_path.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("version = ", "invalid TOML"),
        ('current_profile = "a"\n', "missing top-level 'version'"),
        ("version = 2.0\n", "version: expected a string, got a float"),
        ('version = "2"\ncurrent_profile = 1\n', "current_profile: expected a string"),
        ('version = "2"\nprofile = 1\n', "profile: expected a table"),
        ('version = "2"\n[profile.a]\ntopic = "t"\n', "profile.a: missing 'cluster'"),
        ('version = "2"\n[profile.a]\ncluster = 3\n', "profile.a.cluster: expected a string, got an integer"),
        ('version = "2"\n[profile.a]\ncluster = "a"\npartition = "0"\n', "profile.a.partition: expected an integer"),
        ('version = "2"\n[cluster.a]\ntls = { tls_policy = "anonymous" }\n', "cluster.a: missing 'endpoint'"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\naddr = "h:1"\n', "not both"),
        ('version = "2"\n[cluster.a]\naddr = ["h:1"]\n', "cluster.a.addr: expected a string, got an array"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\nuse_spu_local_address = "yes"\n',
         "use_spu_local_address: expected true or false"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\ntls = "verified"\n', "cluster.a.tls: expected a table"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\n[cluster.a.tls]\n', "cluster.a.tls: missing 'tls_policy'"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\ntls = { tls_policy = "strict" }\n',
         "cluster.a.tls.tls_policy: expected one of disabled, anonymous, verified; got 'strict'"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\ntls = { tls_policy = "verified" }\n',
         "needs tls_source"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\n'
         'tls = { tls_policy = "verified", tls_source = "disk", certs = {} }\n',
         "tls_source: expected 'files' or 'inline', got 'disk'"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\n[cluster.a.tls]\ntls_policy = "verified"\n'
         'tls_source = "files"\ndomain = "d"\nkey = "k"\ncert = "c"\nca_cert = "a"\n',
         "found domain, key, cert, ca_cert directly in the tls table"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\n[cluster.a.tls]\ntls_policy = "verified"\n'
         'tls_source = "files"\ncerts = { domain = "d", key = "k", cert = "c" }\n',
         "cluster.a.tls.certs: missing 'ca_cert'"),
        ('version = "2"\n[cluster.a]\nendpoint = "h:1"\n[cluster.a.tls]\ntls_policy = "verified"\n'
         'tls_source = "files"\ncerts = { domain = "d", key = "k", cert = "c", ca_cert = 1 }\n',
         "cluster.a.tls.certs.ca_cert: expected a string"),
        ('version = "2"\n[cluster."x.y"]\nendpoint = 1\n', 'cluster."x.y".endpoint: expected a string'),
    ],
)
def test_malformed_files_raise_config_error_naming_file_and_key(cfg_path, text, message):
    cfg_path.write_text(text)
    with pytest.raises(ConfigError) as info:
        prof.load_config(cfg_path)
    assert message in str(info.value)
    assert str(cfg_path) in str(info.value)


def test_unreadable_and_non_utf8_files_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read profile file"):
        prof.load_config(tmp_path)  # a directory
    bad = tmp_path / "latin1"
    bad.write_bytes(b'version = "\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        prof.load_config(bad)


# ---------------------------------------------------------------------------------------------
# Saving


def test_save_is_atomic_private_and_creates_the_directory(tmp_path):
    target = tmp_path / "new" / "dir" / "config"
    cfg = Config()
    cfg.add_profile("local", "127.0.0.1:9003")
    assert prof.save_config(cfg, target) == target
    assert target.read_text() == MINIMAL
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["config"]  # no temporary file left
    assert cfg.path == target
    cfg.add_profile("other", "h:1", set_current=False)
    prof.save_config(cfg)  # back to where it was saved
    assert "[profile.other]" in target.read_text()


def test_failed_save_leaves_the_old_file_and_no_temporary(cfg_path, monkeypatch):
    prof.add_profile("local", "127.0.0.1:9003", path=cfg_path)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prof.os, "replace", failing_replace)
    with pytest.raises(ConfigError, match="cannot write profile file .*No space left"):
        prof.add_profile("other", "h:1", path=cfg_path)
    assert cfg_path.read_text() == MINIMAL
    assert [p.name for p in cfg_path.parent.iterdir()] == ["config"]


def test_save_into_an_unwritable_place_raises_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write profile file"):
        prof.save_config(Config(), blocker / "config")


# ---------------------------------------------------------------------------------------------
# Operations


def test_add_profile_creates_profile_and_cluster_and_selects_it(cfg_path):
    two_profiles(cfg_path)
    cfg = prof.load_config(cfg_path)
    assert cfg.profiles == {"a": Profile("a"), "b": Profile("b")}
    assert cfg.clusters == {"a": Cluster("127.0.0.1:9003"), "b": Cluster("10.0.0.2:9003", tls=TlsAnonymous())}
    assert cfg.current_profile == "b"


def test_add_profile_without_selecting_it(cfg_path):
    prof.add_profile("a", "h:1", path=cfg_path)
    prof.add_profile("b", "h:2", set_current=False, path=cfg_path)
    assert prof.current_profile(path=cfg_path) == "a"


def test_add_profile_replaces_an_existing_one(cfg_path):
    prof.add_profile("a", "h:1", FILES_TLS, path=cfg_path)
    prof.add_profile("a", "h:9", path=cfg_path)
    cfg = prof.load_config(cfg_path)
    assert cfg.clusters == {"a": Cluster("h:9")}
    assert cfg.profiles == {"a": Profile("a")}


def test_add_profile_repoints_a_profile_that_used_another_cluster(cfg_path):
    cfg = Config(profiles={"a": Profile("shared")}, clusters={"shared": Cluster("h:1")})
    cfg.add_profile("a", "h:2")
    assert cfg.profiles["a"].cluster == "a"
    assert cfg.clusters == {"shared": Cluster("h:1"), "a": Cluster("h:2")}


@pytest.mark.parametrize(
    "name, endpoint, message",
    [
        ("", "h:1", "non-empty"),
        (" a", "h:1", "invalid profile name"),
        ("a\nb", "h:1", "invalid profile name"),
        ("a", "h", "has no port"),
        ("a", ":9003", "has no host"),
        ("a", "h:0", "port must be a number from 1 to 65535"),
        ("a", "h:65536", "port must be"),
        ("a", "h:http", "port must be"),
        ("a", "::1:9003", "IPv6 address in brackets"),
    ],
)
def test_add_profile_rejects_bad_names_and_endpoints(cfg_path, name, endpoint, message):
    with pytest.raises(ConfigError, match=message):
        prof.add_profile(name, endpoint, path=cfg_path)
    assert not cfg_path.exists()


def test_add_profile_rejects_a_non_policy(cfg_path):
    with pytest.raises(ConfigError, match="not a TLS policy"):
        prof.add_profile("a", "h:1", "verified", path=cfg_path)


def test_split_endpoint():
    assert prof.split_endpoint("127.0.0.1:9003") == ("127.0.0.1", 9003)
    assert prof.split_endpoint("[::1]:9003") == ("::1", 9003)
    assert prof.split_endpoint("sc.fluvial.local:1") == ("sc.fluvial.local", 1)
    assert ResolvedCluster("[::1]:5").host == "::1" and ResolvedCluster("[::1]:5").port == 5


def test_list_profiles(cfg_path):
    two_profiles(cfg_path)
    prof.add_profile("c", "h:3", FILES_TLS, set_current=False, path=cfg_path)
    rows = prof.list_profiles(path=cfg_path)
    assert [(r.name, r.cluster, r.endpoint, r.current) for r in rows] == [
        ("a", "a", "127.0.0.1:9003", False), ("b", "b", "10.0.0.2:9003", True), ("c", "c", "h:3", False)]
    assert [r.tls.describe() for r in rows] == ["disabled", "anonymous", "verified (files, domain fluvio.local)"]


def test_list_profiles_shows_a_missing_cluster_as_none():
    cfg = Config(profiles={"a": Profile("gone")})
    [row] = cfg.entries()
    assert (row.endpoint, row.tls) == (None, None)


def test_switch_profile(cfg_path):
    two_profiles(cfg_path)
    prof.switch_profile("a", path=cfg_path)
    assert prof.current_profile(path=cfg_path) == "a"


def test_switch_to_unknown_profile_lists_the_known_ones(cfg_path):
    two_profiles(cfg_path)
    with pytest.raises(ConfigError) as info:
        prof.switch_profile("x", path=cfg_path)
    assert str(info.value) == "no profile named 'x'; known: a, b"
    assert prof.current_profile(path=cfg_path) == "b"


def test_switch_with_no_profiles_says_how_to_make_one(cfg_path):
    with pytest.raises(ConfigError, match="no profile named 'x'; no profiles are defined.*fluvial profile add"):
        prof.switch_profile("x", path=cfg_path)


def test_rename_profile_renames_its_cluster_and_follows_current(cfg_path):
    two_profiles(cfg_path)
    prof.rename_profile("b", "prod", path=cfg_path)
    cfg = prof.load_config(cfg_path)
    assert cfg.current_profile == "prod"
    assert cfg.profiles == {"a": Profile("a"), "prod": Profile("prod")}
    assert cfg.clusters["prod"] == Cluster("10.0.0.2:9003", tls=TlsAnonymous())
    assert "b" not in cfg.clusters


def test_rename_keeps_a_shared_or_differently_named_cluster():
    cfg = Config(current_profile="x",
                 profiles={"a": Profile("a"), "b": Profile("a"), "x": Profile("c1")},
                 clusters={"a": Cluster("h:1"), "c1": Cluster("h:2")})
    cfg.rename_profile("a", "a2")
    assert cfg.profiles["a2"] == Profile("a") and set(cfg.clusters) == {"a", "c1"}
    cfg.rename_profile("x", "y")
    assert cfg.profiles["y"] == Profile("c1") and cfg.current_profile == "y"
    cfg.rename_profile("y", "y")
    assert set(cfg.profiles) == {"a2", "b", "y"}


def test_rename_does_not_clobber_an_existing_cluster_of_the_new_name():
    cfg = Config(profiles={"a": Profile("a")}, clusters={"a": Cluster("h:1"), "b": Cluster("h:2")})
    cfg.rename_profile("a", "b")
    assert cfg.profiles == {"b": Profile("a")}
    assert cfg.clusters == {"a": Cluster("h:1"), "b": Cluster("h:2")}


def test_rename_errors(cfg_path):
    two_profiles(cfg_path)
    with pytest.raises(ConfigError, match="no profile named 'x'; known: a, b"):
        prof.rename_profile("x", "y", path=cfg_path)
    with pytest.raises(ConfigError, match="a profile named 'b' already exists"):
        prof.rename_profile("a", "b", path=cfg_path)
    with pytest.raises(ConfigError, match="non-empty"):
        prof.rename_profile("a", "", path=cfg_path)
    assert set(prof.load_config(cfg_path).profiles) == {"a", "b"}


def test_delete_current_profile_clears_current_and_drops_its_cluster(cfg_path):
    two_profiles(cfg_path)
    deleted = prof.delete_profile("b", path=cfg_path)
    assert deleted == prof.DeletedProfile("b", was_current=True, cluster_deleted="b")
    cfg = prof.load_config(cfg_path)
    assert cfg.current_profile is None
    assert set(cfg.profiles) == {"a"} and set(cfg.clusters) == {"a"}
    assert "current_profile" not in cfg_path.read_text()


def test_delete_keeps_a_cluster_another_profile_uses():
    cfg = Config(current_profile="b", profiles={"a": Profile("c"), "b": Profile("c")}, clusters={"c": Cluster("h:1")})
    assert cfg.delete_profile("a") == prof.DeletedProfile("a", was_current=False, cluster_deleted=None)
    assert cfg.current_profile == "b" and set(cfg.clusters) == {"c"}
    assert cfg.delete_profile("b") == prof.DeletedProfile("b", was_current=True, cluster_deleted="c")
    assert cfg.clusters == {}


def test_delete_unknown_profile(cfg_path):
    two_profiles(cfg_path)
    with pytest.raises(ConfigError, match="no profile named 'zz'; known: a, b"):
        prof.delete_profile("zz", path=cfg_path)


def test_export_inlines_file_certs_into_a_standalone_config(cfg_path, tmp_path):
    paths = mint_cluster_certs(tmp_path / "certs", spu_names=())
    tls = TlsVerified("fluvial.local", str(paths["client_admin_key"]), str(paths["client_admin_cert"]),
                      str(paths["ca_cert"]))
    prof.add_profile("sec", "127.0.0.1:9005", tls, path=cfg_path)
    prof.add_profile("local", "127.0.0.1:9003", path=cfg_path)
    exported = Config.from_toml(prof.export("sec", path=cfg_path))
    assert exported.current_profile == "sec"
    assert set(exported.profiles) == {"sec"} and set(exported.clusters) == {"sec"}
    got = exported.clusters["sec"].tls
    assert got == TlsVerified("fluvial.local", paths["client_admin_key"].read_text(),
                              paths["client_admin_cert"].read_text(), paths["ca_cert"].read_text(),
                              source="inline")
    # Current profile by default; the source file is untouched.
    assert Config.from_toml(prof.export(path=cfg_path)).profiles == {"local": Profile("local")}
    assert prof.load_config(cfg_path).clusters["sec"].tls == tls


def test_export_errors(cfg_path, tmp_path):
    with pytest.raises(ConfigError, match="no profile is selected"):
        prof.export(path=cfg_path)
    prof.add_profile("a", "h:1", TlsVerified("d", str(tmp_path / "missing.key"), "c", "ca"), path=cfg_path)
    with pytest.raises(ConfigError, match="cannot read TLS key file .*missing.key"):
        prof.export(path=cfg_path)
    with pytest.raises(ConfigError, match="no profile named 'b'"):
        prof.export("b", path=cfg_path)


def test_verified_rejects_an_unknown_source():
    with pytest.raises(ConfigError, match="tls_source must be"):
        TlsVerified("d", "k", "c", "a", source="disk")


# ---------------------------------------------------------------------------------------------
# resolve_endpoint


def test_explicit_endpoint_wins_without_reading_the_file(cfg_path):
    cfg_path.write_text("this is not toml")
    assert prof.resolve_endpoint(endpoint="h:7", path=cfg_path) == ResolvedCluster("h:7", TlsDisabled())
    assert prof.resolve_endpoint("whatever", "h:7", TlsAnonymous(), path=cfg_path) == ResolvedCluster(
        "h:7", TlsAnonymous())
    with pytest.raises(ConfigError, match="has no port"):
        prof.resolve_endpoint(endpoint="h", path=cfg_path)


def test_named_profile_then_current_profile(cfg_path):
    two_profiles(cfg_path)
    assert prof.resolve_endpoint("a", path=cfg_path) == ResolvedCluster("127.0.0.1:9003", TlsDisabled(), profile="a")
    assert prof.resolve_endpoint(path=cfg_path) == ResolvedCluster("10.0.0.2:9003", TlsAnonymous(), profile="b")


def test_explicit_tls_overrides_the_profiles(cfg_path):
    two_profiles(cfg_path)
    assert prof.resolve_endpoint("b", tls=FILES_TLS, path=cfg_path).tls == FILES_TLS


def test_nothing_to_resolve_tells_the_user_what_to_run(cfg_path):
    with pytest.raises(ConfigError) as info:
        prof.resolve_endpoint(path=cfg_path)
    assert "no profile is selected" in str(info.value)
    assert "fluvial cluster start" in str(info.value) and "fluvial profile add" in str(info.value)
    two_profiles(cfg_path)
    prof.delete_profile("b", path=cfg_path)
    with pytest.raises(ConfigError, match="fluvial cluster start"):
        prof.resolve_endpoint(path=cfg_path)


def test_resolve_errors_name_the_problem(cfg_path):
    two_profiles(cfg_path)
    with pytest.raises(ConfigError, match="no profile named 'x'; known: a, b"):
        prof.resolve_endpoint("x", path=cfg_path)
    cfg = Config(current_profile="ghost", profiles={"a": Profile("nowhere"), "bad": Profile("bad")},
                 clusters={"bad": Cluster("no-port")})
    with pytest.raises(ConfigError, match="current profile 'ghost' is not defined; known: a, bad"):
        cfg.resolve()
    with pytest.raises(ConfigError, match="profile 'a' uses cluster 'nowhere', which is not defined"):
        cfg.resolve("a")
    with pytest.raises(ConfigError, match="profile 'bad': endpoint 'no-port' has no port"):
        cfg.resolve("bad")


# ---------------------------------------------------------------------------------------------
# The official fluvio client reads what we write (FLV_PROFILE_PATH)


@dataclass
class Seen:
    first_frame: bytes | None = None
    sni: list = field(default_factory=list)
    peer_cert: dict | None = None
    error: BaseException | None = None


class OneShotServer:
    """Accepts one connection on 127.0.0.1 (optionally TLS), records what it sees, reads the first
    frame (the client's ApiVersions request) and closes."""

    def __init__(self, ctx: ssl.SSLContext | None = None):
        self.ctx = ctx
        self.seen = Seen()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(60)
        self.endpoint = "127.0.0.1:%d" % self.listener.getsockname()[1]
        if ctx is not None:
            ctx.sni_callback = lambda sslobj, name, c: self.seen.sni.append(name)
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        conn = None
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(60)
            stream = self.ctx.wrap_socket(conn, server_side=True) if self.ctx else conn
            if self.ctx:
                self.seen.peer_cert = stream.getpeercert()
            head = self._read(stream, 4)
            self.seen.first_frame = head + self._read(stream, struct.unpack(">i", head)[0])
            stream.close()
        except BaseException as e:  # the test asserts on it
            self.seen.error = e
        finally:
            if conn is not None:
                conn.close()

    @staticmethod
    def _read(stream, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = stream.recv(n - len(data))
            if not chunk:
                raise EOFError(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def finish(self) -> Seen:
        self.thread.join(timeout=90)
        self.listener.close()
        assert not self.thread.is_alive()
        return self.seen


OFFICIAL_CLIENT = """\
import fluvio
cfg = fluvio.FluvioConfig.load()
print("loaded", flush=True)
try:
    fluvio.Fluvio.connect_with_config(cfg)
except Exception as e:
    print("connect:", e)
"""


def run_official_client(profile_file: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", OFFICIAL_CLIENT],
        env={**os.environ, "FLV_PROFILE_PATH": str(profile_file), **env},
        capture_output=True, text=True, timeout=120, cwd=profile_file.parent,
    )


def api_key_of(frame: bytes) -> int:
    return struct.unpack(">h", frame[4:6])[0]


API_VERSIONS = 18


def test_official_client_loads_a_minimal_profile_and_dials_its_endpoint(cfg_path):
    server = OneShotServer()
    prof.add_profile("local", server.endpoint, path=cfg_path)
    run = run_official_client(cfg_path)
    seen = server.finish()
    assert run.stdout.startswith("loaded"), run.stdout + run.stderr
    assert seen.error is None
    assert api_key_of(seen.first_frame) == API_VERSIONS


def test_official_client_picks_the_current_profile(cfg_path):
    server = OneShotServer()
    prof.add_profile("elsewhere", "127.0.0.1:1", path=cfg_path)
    prof.add_profile("here", server.endpoint, path=cfg_path)
    prof.add_profile("later", "127.0.0.1:2", set_current=False, path=cfg_path)
    run = run_official_client(cfg_path)
    seen = server.finish()
    assert run.stdout.startswith("loaded"), run.stdout + run.stderr
    assert api_key_of(seen.first_frame) == API_VERSIONS


def test_official_client_reports_no_active_profile_after_delete(cfg_path):
    # The negative control for the tests above: the client really reads this file.
    prof.add_profile("local", "127.0.0.1:9003", path=cfg_path)
    prof.delete_profile("local", path=cfg_path)
    run = run_official_client(cfg_path)
    assert "no active profile" in run.stderr
    assert "loaded" not in run.stdout


@pytest.fixture(scope="module")
def cluster_certs(tmp_path_factory):
    return mint_cluster_certs(tmp_path_factory.mktemp("certs"), spu_names=(), client_cns=("admin",))


def mtls_server(paths) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["server_cert"], paths["server_key"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(paths["ca_cert"])
    return ctx


def subject_cn(cert: dict) -> str:
    return dict(a for rdn in cert["subject"] for a in rdn)["commonName"]


@pytest.mark.parametrize("inline", [False, True], ids=["files", "inline"])
def test_official_client_does_mutual_tls_from_a_verified_profile(cfg_path, cluster_certs, inline):
    paths = cluster_certs
    server = OneShotServer(mtls_server(paths))
    tls = TlsVerified("fluvial.local", str(paths["client_admin_key"]), str(paths["client_admin_cert"]),
                      str(paths["ca_cert"]))
    prof.add_profile("secure", server.endpoint, tls, path=cfg_path)
    if inline:
        cfg_path.write_text(prof.export(path=cfg_path))
        assert 'tls_source = "inline"' in cfg_path.read_text()
    run = run_official_client(cfg_path)
    seen = server.finish()
    assert run.stdout.startswith("loaded"), run.stdout + run.stderr
    assert seen.error is None, seen.error
    assert seen.sni == ["fluvial.local"]  # the profile's domain, not the endpoint's host
    assert subject_cn(seen.peer_cert) == "admin"
    assert api_key_of(seen.first_frame) == API_VERSIONS


def test_official_client_does_anonymous_tls_from_a_profile(cfg_path, cluster_certs):
    paths = cluster_certs
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["server_cert"], paths["server_key"])
    server = OneShotServer(ctx)
    prof.add_profile("anon", server.endpoint, TlsAnonymous(), path=cfg_path)
    # README §6.5.3: anonymous mode trusts only the default store, which SSL_CERT_FILE sets.
    run = run_official_client(cfg_path, SSL_CERT_FILE=str(paths["ca_cert"]))
    seen = server.finish()
    assert run.stdout.startswith("loaded"), run.stdout + run.stderr
    assert seen.error is None, seen.error
    assert seen.sni == [server.endpoint]  # anonymous sends host:port as SNI
    assert seen.peer_cert is None
    assert api_key_of(seen.first_frame) == API_VERSIONS


def test_official_client_refuses_a_server_from_another_ca(cfg_path, cluster_certs, tmp_path):
    # Control for the TLS tests: the client really verifies against the profile's ca_cert.
    other = CA("other").issue_server_cert("fluvial.local")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.configure_cert(ctx)
    server = OneShotServer(ctx)
    paths = cluster_certs
    prof.add_profile("secure", server.endpoint, TlsVerified(
        "fluvial.local", str(paths["client_admin_key"]), str(paths["client_admin_cert"]), str(paths["ca_cert"])),
        path=cfg_path)
    run = run_official_client(cfg_path)
    seen = server.finish()
    assert "unable to get local issuer certificate" in run.stdout
    assert seen.first_frame is None and isinstance(seen.error, ssl.SSLError)
