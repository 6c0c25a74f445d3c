"""``fluvial cluster certs``: the files it writes, the policy beside them, and that both load."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat

import pytest
import typer
from cryptography import x509
from typer.testing import CliRunner

from fluvial.auth import load_policy
from fluvial.cli import certs
from fluvial.net.tls import client_ssl_context, common_name, server_ssl_context

runner = CliRunner(env={"TERMINAL_WIDTH": "200", "NO_COLOR": "1"})


@pytest.fixture
def cluster_app() -> typer.Typer:
    """A stand-in for ``fluvial cluster``, with the sub-command mounted the way the lead does."""
    root = typer.Typer()
    cluster = typer.Typer()

    @cluster.callback()
    def _cluster() -> None:
        """cluster"""

    certs.register(cluster)
    root.add_typer(cluster, name="cluster")
    return root


def run(app, *args: str, env: dict | None = None):
    return runner.invoke(app, ["cluster", "certs", *args], env=env)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[list[str], list]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)


def memory_handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str):
    """A TLS handshake over memory BIOs; returns (client error, server error, server's view of
    the client certificate)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    errors: dict[str, BaseException | None] = {"client": None, "server": None}
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj in (("client", client), ("server", server)):
            if done[name] or errors[name]:
                continue
            try:
                obj.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                errors[name] = e
        if c_out.pending:
            s_in.write(c_out.read())
        if s_out.pending:
            c_in.write(s_out.read())
        if all(done.values()) or any(errors.values()):
            break
    if any(errors.values()):
        return errors["client"], errors["server"], None
    assert all(done.values()), "handshake did not finish"
    return None, None, server.getpeercert()


def test_defaults_write_under_fluvial_home(cluster_app, tmp_path):
    result = run(cluster_app, env={"FLUVIAL_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    out = tmp_path / "certs"
    names = sorted(p.name for p in out.iterdir())
    spus = [f"custom-spu-{i}" for i in (5001, 5002, 5003)]
    assert names == sorted(["ca.crt", "ca.key", "server.crt", "server.key", "sc.crt", "sc.key",
                            "client-admin.crt", "client-admin.key", "policy.toml",
                            *(f"{s}.crt" for s in spus), *(f"{s}.key" for s in spus)])
    for name in names:
        assert name in result.stdout
    assert "domain fluvial.local" in result.stdout
    assert stat.S_IMODE((out / "ca.key").stat().st_mode) == 0o600
    dns, ips = sans(load(out / "server.crt"))
    assert dns == ["fluvial.local", "*.fluvial.local", "localhost"]
    assert ips == [ipaddress.ip_address("127.0.0.1")]

    policy = load_policy(out / "policy.toml")
    assert policy.allows("admin", "admin", "topic", "t")
    assert policy.allows("admin", "produce", "topic", "t")
    assert policy.allows("admin", "consume", "topic", "t")
    for member in ("sc", *spus):
        assert policy.allows(member, "member")
    assert not policy.allows("admin", "member")
    assert not policy.allows(None, "read", "topic")
    assert not policy.allows("custom-spu-5004", "member")
    assert (out / "policy.toml").read_text().startswith("# fluvial authorization policy")


def test_options_shape_names_sans_validity_and_policy(cluster_app, tmp_path):
    out = tmp_path / "tls"
    result = run(cluster_app, "--out", str(out), "--domain", "cluster.example.com", "--spus", "2",
                 "--first-spu-id", "7001", "--client", "reader", "--admin", "ops",
                 "--host", "10.0.0.7", "--host", "node1.example.com", "--days", "2")
    assert result.exit_code == 0, result.output
    assert (out / "custom-spu-7001.crt").exists() and (out / "custom-spu-7002.crt").exists()
    assert not (out / "custom-spu-7003.crt").exists()
    assert (out / "client-reader.crt").exists() and (out / "client-ops.crt").exists()
    assert not (out / "client-admin.crt").exists()
    dns, ips = sans(load(out / "server.crt"))
    assert dns == ["cluster.example.com", "*.cluster.example.com", "localhost", "node1.example.com"]
    assert ips == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.7")]
    spu_dns, _ = sans(load(out / "custom-spu-7001.crt"))
    assert "custom-spu-7001.cluster.example.com" in spu_dns
    client = load(out / "client-reader.crt")
    assert client.not_valid_after_utc - client.not_valid_before_utc <= dt.timedelta(days=2, hours=1, seconds=1)

    policy = load_policy(out / "policy.toml")
    assert policy.allows("ops", "admin", "spu", "x")
    assert policy.allows("reader", "read", "topic")
    assert not policy.allows("reader", "consume", "topic", "t")
    assert not policy.allows("admin", "read", "topic")  # not minted, not in the policy
    assert policy.allows("custom-spu-7002", "member") and not policy.allows("custom-spu-5001", "member")
    assert "client principal ops (admin)" in result.stdout


def test_files_load_into_the_servers_ssl_contexts_and_handshake(cluster_app, tmp_path):
    out = tmp_path / "certs"
    assert run(cluster_app, "--out", str(out), "--spus", "1", "--client", "reader").exit_code == 0
    ca = out / "ca.crt"
    public = server_ssl_context(out / "server.crt", out / "server.key", ca_file=ca,
                                require_client_cert=True)
    for cn in ("admin", "reader"):
        client = client_ssl_context(ca, cert_file=out / f"client-{cn}.crt",
                                    key_file=out / f"client-{cn}.key")
        # The official client checks <domain> on the SC and <spu name>.<domain> on an SPU.
        for hostname in ("fluvial.local", "custom-spu-5001.fluvial.local"):
            c_err, s_err, peer = memory_handshake(public, client, hostname)
            assert (c_err, s_err) == (None, None)
            assert common_name(peer) == cn
    # Without a client certificate the public listener refuses the client.
    c_err, s_err, _ = memory_handshake(public, client_ssl_context(ca), "fluvial.local")
    assert s_err is not None
    # Members: mutual TLS on the private listener, both ways.
    sc_server = server_ssl_context(out / "sc.crt", out / "sc.key", ca_file=ca, require_client_cert=True)
    spu_client = client_ssl_context(ca, cert_file=out / "custom-spu-5001.crt",
                                    key_file=out / "custom-spu-5001.key")
    assert memory_handshake(sc_server, spu_client, "sc.fluvial.local")[2] is not None
    assert common_name(memory_handshake(sc_server, spu_client, "sc.fluvial.local")[2]) == "custom-spu-5001"
    spu_server = server_ssl_context(out / "custom-spu-5001.crt", out / "custom-spu-5001.key",
                                    ca_file=ca, require_client_cert=True)
    sc_client = client_ssl_context(ca, cert_file=out / "sc.crt", key_file=out / "sc.key")
    peer = memory_handshake(spu_server, sc_client, "custom-spu-5001.fluvial.local")[2]
    assert common_name(peer) == "sc"


def test_refuses_to_overwrite_without_force(cluster_app, tmp_path):
    out = tmp_path / "certs"
    assert run(cluster_app, "--out", str(out)).exit_code == 0
    first_ca = (out / "ca.crt").read_bytes()
    again = run(cluster_app, "--out", str(out))
    assert again.exit_code == 1
    assert "--force" in again.stderr
    assert (out / "ca.crt").read_bytes() == first_ca
    forced = run(cluster_app, "--out", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "ca.crt").read_bytes() != first_ca


@pytest.mark.parametrize("args, code, message", [
    (["--client", "a/b"], 1, "cannot be used as a certificate file name"),
    (["--spus", "-1"], 2, ""),
    (["--days", "0"], 2, ""),
])
def test_bad_arguments_fail_without_writing(cluster_app, tmp_path, args, code, message):
    out = tmp_path / "certs"
    result = run(cluster_app, "--out", str(out), *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert not (out / "policy.toml").exists()


def test_zero_spus_mints_only_the_sc_member(cluster_app, tmp_path):
    out = tmp_path / "certs"
    assert run(cluster_app, "--out", str(out), "--spus", "0").exit_code == 0
    assert not list(out.glob("custom-spu-*"))
    assert load_policy(out / "policy.toml").allows("sc", "member")


def test_write_default_policy_for_cluster_start(tmp_path):
    path = tmp_path / "policy.toml"
    certs.write_default_policy(path, members=["sc", "custom-spu-5001"])
    policy = load_policy(path)
    assert policy.allows("admin", "admin", "topic", "t") and policy.allows("custom-spu-5001", "member")
    assert not policy.allows("custom-spu-5002", "member")
    assert not (tmp_path / "policy.toml.tmp").exists()


def test_member_name_matches_the_sc_naming():
    assert certs.spu_member_name(5001) == "custom-spu-5001"
