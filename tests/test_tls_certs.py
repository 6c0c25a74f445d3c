"""The certificate factory, proven with real TLS handshakes (stdlib ssl over 127.0.0.1, server in a thread)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fluvial.tls_certs import CA, DEFAULT_SPU_NAMES, LeafCert, mint_cluster_certs

REPO = Path(__file__).resolve().parents[1]
IO_TIMEOUT_S = 10


# ---------------------------------------------------------------------------------------------
# A loopback handshake harness


@dataclass
class Outcome:
    client_error: BaseException | None = None
    server_error: BaseException | None = None
    client_got: bytes = b""
    peer_cert: dict | None = None
    sni: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None and self.client_got == b"hello"


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str | None) -> Outcome:
    """Run one TLS connection on 127.0.0.1; the server sends b"hello" once the handshake is done."""
    out = Outcome()
    server_ctx.sni_callback = lambda sslobj, name, ctx: out.sni.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT_S)

    def serve() -> None:
        conn = None
        try:
            conn, _ = listener.accept()
            conn.settimeout(IO_TIMEOUT_S)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                out.peer_cert = tls.getpeercert()
                tls.sendall(b"hello")
                # Wait for the client to close, so that our close_notify cannot race its read.
                try:
                    tls.recv(1)
                except (ssl.SSLError, OSError):
                    pass
        except BaseException as e:  # recorded for the test to assert on
            out.server_error = e
        finally:
            if conn is not None:
                conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=IO_TIMEOUT_S) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                got = b""
                while len(got) < 5:
                    chunk = tls.recv(5 - len(got))
                    if not chunk:
                        break
                    got += chunk
                out.client_got = got
    except (ssl.SSLError, OSError) as e:
        out.client_error = e
    finally:
        thread.join(timeout=3 * IO_TIMEOUT_S)
        listener.close()
    assert not thread.is_alive(), "server thread did not finish"
    return out


def server_context(leaf: LeafCert, client_ca: CA | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(ctx)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    return ctx


def client_context(ca: CA, leaf: LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # check_hostname + CERT_REQUIRED
    ca.configure_trust(ctx)
    if leaf is not None:
        leaf.configure_cert(ctx)
    return ctx


def verify_message(err: BaseException | None) -> str:
    assert isinstance(err, ssl.SSLCertVerificationError), f"expected a verification error, got {err!r}"
    return err.verify_message


def past(days: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("fluvial test CA")


@pytest.fixture(scope="module")
def server_cert(ca: CA) -> LeafCert:
    return ca.issue_server_cert("fluvial.local", "*.fluvial.local", "localhost", "127.0.0.1")


@pytest.fixture(scope="module")
def client_cert(ca: CA) -> LeafCert:
    return ca.issue_client_cert("admin")


# ---------------------------------------------------------------------------------------------
# Handshakes


@pytest.mark.parametrize("name", ["fluvial.local", "custom-spu-5001.fluvial.local", "localhost", "127.0.0.1"])
def test_server_cert_verifies_for_each_san(ca, server_cert, name):
    out = handshake(server_context(server_cert), client_context(ca), name)
    assert out.ok, out
    assert out.sni == ([None] if name == "127.0.0.1" else [name])  # no SNI is sent for an IP


@pytest.mark.parametrize("name", ["other.example", "fluvial.locals", "a.b.fluvial.local", "127.0.0.2"])
def test_server_cert_rejected_for_a_name_it_does_not_carry(ca, server_cert, name):
    out = handshake(server_context(server_cert), client_context(ca), name)
    assert not out.ok
    assert "mismatch" in verify_message(out.client_error).lower()


def test_client_cert_presented_and_accepted(ca, server_cert, client_cert):
    out = handshake(server_context(server_cert, client_ca=ca), client_context(ca, client_cert), "fluvial.local")
    assert out.ok, out
    subject = dict(attr for rdn in out.peer_cert["subject"] for attr in rdn)
    assert subject["commonName"] == "admin"


def test_server_requiring_a_client_cert_refuses_a_client_without_one(ca, server_cert):
    out = handshake(server_context(server_cert, client_ca=ca), client_context(ca), "fluvial.local")
    assert not out.ok
    assert isinstance(out.server_error, ssl.SSLError)
    assert "certificate" in str(out.server_error).lower()


def test_expired_server_cert_rejected(ca):
    expired = ca.issue_server_cert("fluvial.local", not_before=past(10), not_after=past(1))
    out = handshake(server_context(expired), client_context(ca), "fluvial.local")
    assert "expired" in verify_message(out.client_error)


def test_not_yet_valid_server_cert_rejected(ca):
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    early = ca.issue_server_cert("fluvial.local", not_before=future)
    out = handshake(server_context(early), client_context(ca), "fluvial.local")
    assert "not yet valid" in verify_message(out.client_error)


def test_expired_client_cert_rejected_by_server(ca, server_cert):
    expired = ca.issue_client_cert("admin", not_before=past(10), not_after=past(1))
    out = handshake(server_context(server_cert, client_ca=ca), client_context(ca, expired), "fluvial.local")
    assert not out.ok
    assert isinstance(out.server_error, ssl.SSLCertVerificationError)
    assert "expired" in out.server_error.verify_message


def test_server_cert_from_another_ca_rejected(ca):
    other = CA("someone else's CA").issue_server_cert("fluvial.local")
    out = handshake(server_context(other), client_context(ca), "fluvial.local")
    assert "unable to get local issuer certificate" in verify_message(out.client_error)


def test_client_cert_from_another_ca_rejected_by_server(ca, server_cert):
    stranger = CA("someone else's CA").issue_client_cert("mallory")
    out = handshake(server_context(server_cert, client_ca=ca), client_context(ca, stranger), "fluvial.local")
    assert not out.ok
    assert isinstance(out.server_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in out.server_error.verify_message


def test_client_auth_only_server_cert_rejected_by_client(ca):
    wrong = ca.issue_server_cert("fluvial.local", eku=("clientAuth",))
    out = handshake(server_context(wrong), client_context(ca), "fluvial.local")
    assert "unsuitable certificate purpose" in verify_message(out.client_error)


def test_server_auth_only_client_cert_rejected_by_server(ca, server_cert):
    wrong = ca.issue_client_cert("admin", eku=("serverAuth",))
    out = handshake(server_context(server_cert, client_ca=ca), client_context(ca, wrong), "fluvial.local")
    assert isinstance(out.server_error, ssl.SSLCertVerificationError)
    assert "unsuitable certificate purpose" in out.server_error.verify_message


def test_cert_without_key_usages_is_accepted(ca):
    # README §6.5.3/§6.5.5: neither KU nor EKU is also acceptable for a server.
    bare = ca.issue_server_cert("fluvial.local", eku=None, key_usage=False)
    assert handshake(server_context(bare), client_context(ca), "fluvial.local").ok


def test_member_cert_serves_and_dials_mutual_tls(ca):
    sc = ca.issue_member_cert("sc", "sc.fluvial.local")
    spu = ca.issue_member_cert("custom-spu-5001", "custom-spu-5001.fluvial.local")
    # The SPU dials the SC, and the SC dials the SPU: each cert is used both ways.
    out = handshake(server_context(sc, client_ca=ca), client_context(ca, spu), "sc.fluvial.local")
    assert out.ok, out
    assert dict(a for rdn in out.peer_cert["subject"] for a in rdn)["commonName"] == "custom-spu-5001"
    out = handshake(server_context(spu, client_ca=ca), client_context(ca, sc), "custom-spu-5001.fluvial.local")
    assert out.ok, out
    assert dict(a for rdn in out.peer_cert["subject"] for a in rdn)["commonName"] == "sc"


def test_leaf_from_intermediate_carries_the_chain(ca, tmp_path):
    intermediate = ca.create_child_ca("fluvial intermediate")
    leaf = intermediate.issue_server_cert("fluvial.local")
    assert leaf.chain_pem == leaf.cert_pem + intermediate.cert_pem
    assert handshake(server_context(leaf), client_context(ca), "fluvial.local").ok
    # Without the intermediate in what the server sends, a root-only client cannot build the chain.
    (tmp_path / "leaf-only.pem").write_bytes(leaf.key_pem + leaf.cert_pem)
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    bare.load_cert_chain(tmp_path / "leaf-only.pem")
    out = handshake(bare, client_context(ca), "fluvial.local")
    assert "unable to get local issuer certificate" in verify_message(out.client_error)


# ---------------------------------------------------------------------------------------------
# Certificate contents


def _ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def test_ca_extensions_follow_the_recipe(ca):
    bc = _ext(ca.cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = _ext(ca.cert, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature
    assert ca.cert.subject == ca.cert.issuer
    assert ca.name == "fluvial test CA"
    assert ca.parent is None and ca.create_child_ca("child").parent is ca


def test_server_cert_sans_detect_ips_and_dns_names(server_cert):
    san = _ext(server_cert.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fluvial.local", "*.fluvial.local", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    ku = _ext(server_cert.cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    assert list(_ext(server_cert.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not _ext(server_cert.cert, x509.BasicConstraints).value.ca
    assert server_cert.common_name == "fluvial.local"


def test_ipv6_and_unicode_hosts():
    leaf = CA().issue_server_cert("::1", "bücher.example", cn="x")
    san = _ext(leaf.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]
    assert san.get_values_for_type(x509.DNSName) == ["xn--bcher-kva.example"]


def test_default_cn_is_the_first_host_unless_too_long_for_a_cn():
    ca = CA()
    assert ca.issue_server_cert("a.example", "b.example").common_name == "a.example"
    long_name = "spu-" + "x" * 60 + ".fluvial.local"
    leaf = ca.issue_server_cert(long_name)
    assert leaf.common_name == "fluvial"
    assert _ext(leaf.cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [long_name]


def test_client_and_member_ekus(ca, client_cert):
    assert client_cert.common_name == "admin"
    assert list(_ext(client_cert.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    member = ca.issue_member_cert("spu-1")
    assert set(_ext(member.cert, x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert member.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "spu-1"


def test_validity_window_is_as_requested(ca):
    start, end = past(3), past(2)
    leaf = ca.issue_client_cert("old", not_before=start, not_after=end)
    assert leaf.cert.not_valid_before_utc == start.replace(microsecond=0)
    assert leaf.cert.not_valid_after_utc == end.replace(microsecond=0)
    fresh = ca.issue_client_cert("new", valid_days=2)
    lifetime = fresh.cert.not_valid_after_utc - fresh.cert.not_valid_before_utc
    assert dt.timedelta(days=2) < lifetime <= dt.timedelta(days=2, hours=1, seconds=1)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ca: ca.issue_server_cert(), "at least one host"),
        (lambda ca: ca.issue_server_cert("x", eku=("nonsense",)), "unknown extended key usage"),
        (lambda ca: ca.issue_client_cert("x", not_before=dt.datetime(2020, 1, 1)), "timezone-aware"),
        (lambda ca: ca.issue_client_cert("x", not_before=past(1), not_after=past(2)), "must be later"),
        (lambda ca: ca.issue_server_cert(""), "empty host"),
    ],
)
def test_bad_arguments_raise_value_error(ca, call, message):
    with pytest.raises(ValueError, match=message):
        call(ca)


def test_write_puts_pems_on_disk_with_private_keys_0600(tmp_path, ca, server_cert):
    cert_path, key_path = server_cert.write(tmp_path / "out", "server")
    assert (cert_path.name, key_path.name) == ("server.crt", "server.key")
    assert cert_path.read_bytes() == server_cert.chain_pem
    assert key_path.read_bytes() == server_cert.key_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    ca_cert, ca_key = ca.write(tmp_path / "out")
    assert x509.load_pem_x509_certificate(ca_cert.read_bytes()) == ca.cert
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600
    # The files work with the stdlib's file-based loaders.
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert_path, key_path)
    cctx = ssl.create_default_context(cafile=str(ca_cert))
    assert handshake(sctx, cctx, "fluvial.local").ok


# ---------------------------------------------------------------------------------------------
# mint_cluster_certs and certs/mint.py


def _file_contexts(paths, server: str, client: str):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(paths[f"{server}_cert"], paths[f"{server}_key"])
    sctx.verify_mode = ssl.CERT_REQUIRED
    sctx.load_verify_locations(paths["ca_cert"])
    cctx = ssl.create_default_context(cafile=str(paths["ca_cert"]))
    cctx.load_cert_chain(paths[f"{client}_cert"], paths[f"{client}_key"])
    return sctx, cctx


def test_mint_cluster_certs_writes_a_working_set(tmp_path):
    paths = mint_cluster_certs(tmp_path, domain="cluster.example.com", spu_names=("spu-a", "spu-b"),
                               client_cns=("admin", "reader"), extra_hosts=("10.0.0.7",))
    assert set(paths) == {
        "ca_cert", "ca_key", "server_cert", "server_key", "sc_cert", "sc_key",
        "spu-a_cert", "spu-a_key", "spu-b_cert", "spu-b_key",
        "client_admin_cert", "client_admin_key", "client_reader_cert", "client_reader_key",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    server = x509.load_pem_x509_certificate(paths["server_cert"].read_bytes())
    san = _ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cluster.example.com", "*.cluster.example.com", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("10.0.0.7")]
    # A client with its client cert reaches the SC name and an SPU name (wildcard) on the server cert.
    for name in ("cluster.example.com", "spu-a.cluster.example.com"):
        out = handshake(*_file_contexts(paths, "server", "client_reader"), name)
        assert out.ok, out
        assert dict(a for rdn in out.peer_cert["subject"] for a in rdn)["commonName"] == "reader"
    # Members authenticate each other by name.
    out = handshake(*_file_contexts(paths, "spu-b", "sc"), "spu-b.cluster.example.com")
    assert out.ok, out


def test_mint_cluster_certs_defaults(tmp_path):
    paths = mint_cluster_certs(tmp_path)
    for spu in DEFAULT_SPU_NAMES:
        leaf = x509.load_pem_x509_certificate(paths[f"{spu}_cert"].read_bytes())
        names = _ext(leaf, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert f"{spu}.fluvial.local" in names
    out = handshake(*_file_contexts(paths, "server", "client_admin"), f"{DEFAULT_SPU_NAMES[0]}.fluvial.local")
    assert out.ok, out


@pytest.mark.parametrize("spus, clients", [(("ca",), ()), (("sc",), ()), (("a/b",), ()), (("x", "x"), ()),
                                           ((), ("",))])
def test_mint_cluster_certs_refuses_clashing_names(tmp_path, spus, clients):
    with pytest.raises(ValueError):
        mint_cluster_certs(tmp_path, spu_names=spus, client_cns=clients)


def test_mint_script_writes_the_files(tmp_path):
    out_dir = tmp_path / "dev-certs"
    run = subprocess.run(
        [sys.executable, str(REPO / "certs" / "mint.py"), str(out_dir), "--domain", "example.test",
         "--spu", "spu-1", "--client", "alice", "--host", "192.0.2.1"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(["ca.crt", "ca.key", "server.crt", "server.key", "sc.crt", "sc.key",
                            "spu-1.crt", "spu-1.key", "client-alice.crt", "client-alice.key"])
    assert "server.crt" in run.stdout
    server = x509.load_pem_x509_certificate((out_dir / "server.crt").read_bytes())
    san = _ext(server, x509.SubjectAlternativeName).value
    assert "example.test" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("192.0.2.1") in san.get_values_for_type(x509.IPAddress)
