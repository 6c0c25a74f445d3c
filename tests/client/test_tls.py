"""The client over TLS: mutual TLS from files and inline PEM (the profile's ``verified`` policy),
and anonymous TLS, against an in-process cluster whose ports all speak TLS."""

from __future__ import annotations

from functools import partial

import pytest
import trio

import fluvial
from fluvial.client.profile import TlsAnonymous, TlsVerified
from fluvial.net.errors import TlsHandshakeError
from fluvial.net.tls import ClusterTls
from fluvial.sc.server import ScConfig, serve_sc
from fluvial.spu.server import SpuConfig, serve_spu
from fluvial.tls_certs import mint_cluster_certs

from .conftest import TEST_TIMEOUT

DOMAIN = "fluvial.local"


async def start_tls_cluster(nursery, base, anonymous_clients=False):
    certs = base / "certs"
    paths = mint_cluster_certs(certs, DOMAIN, spu_names=["custom-spu-5001"], client_cns=["alice"])
    sc_tls = ClusterTls(certs, "sc", DOMAIN, anonymous_clients=anonymous_clients)
    public, private = await nursery.start(partial(
        serve_sc, ScConfig(base / "sc", public_port=0, private_port=0, tls=sc_tls)))
    spu_tls = ClusterTls(certs, "custom-spu-5001", DOMAIN, anonymous_clients=anonymous_clients)
    await nursery.start(partial(serve_spu, SpuConfig(5001, base / "spu", sc_port=private, tls=spu_tls)))
    return f"127.0.0.1:{public}", paths


async def round_trip(fl):
    await fl.admin.create_topic("secure")
    async with fl.producer("secure") as p:
        meta = await (await p.send(b"secret", key=b"k"))
    async with fl.consumer("secure", continuous=False) as c:
        got = [(r.key, r.value) async for r in c]
    return meta, got


@pytest.mark.parametrize("source", ["files", "inline"])
async def test_mutual_tls_from_files_and_inline(tmp_path, nursery, source):
    with trio.fail_after(TEST_TIMEOUT):
        endpoint, paths = await start_tls_cluster(nursery, tmp_path)
        files = {"key": str(paths["client_alice_key"]), "cert": str(paths["client_alice_cert"]),
                 "ca_cert": str(paths["ca_cert"])}
        tls = TlsVerified(DOMAIN, **files)
        if source == "inline":
            tls = tls.inlined()
        async with fluvial.connect(endpoint=endpoint, tls=tls) as fl:
            meta, got = await round_trip(fl)
        assert meta.offset == 0 and got == [(b"k", b"secret")]
        nursery.cancel_scope.cancel()


async def test_a_plaintext_client_cannot_talk_to_a_tls_cluster(tmp_path, nursery):
    with trio.fail_after(TEST_TIMEOUT):
        endpoint, _ = await start_tls_cluster(nursery, tmp_path)
        with pytest.raises(fluvial.ConnectionLost):
            async with fluvial.connect(endpoint=endpoint, request_timeout=5):
                pass
        nursery.cancel_scope.cancel()


async def test_anonymous_tls_trusts_the_default_store(tmp_path, nursery, monkeypatch):
    with trio.fail_after(TEST_TIMEOUT):
        endpoint, paths = await start_tls_cluster(nursery, tmp_path, anonymous_clients=True)
        monkeypatch.setenv("SSL_CERT_FILE", str(paths["ca_cert"]))
        async with fluvial.connect(endpoint=endpoint, tls=TlsAnonymous()) as fl:
            meta, got = await round_trip(fl)
        assert got == [(b"k", b"secret")]
        nursery.cancel_scope.cancel()


async def test_missing_certificate_files_are_a_config_error(tmp_path):
    tls = TlsVerified(DOMAIN, key=str(tmp_path / "no.key"), cert=str(tmp_path / "no.crt"),
                      ca_cert=str(tmp_path / "no-ca.crt"))
    with pytest.raises(fluvial.ConfigError, match="TLS"):
        async with fluvial.connect(endpoint="127.0.0.1:9", tls=tls):
            pass


async def test_tls_failures_raise_the_tls_error_type(tmp_path, nursery):
    """An untrusted or misnamed server, a server refusing the client's certificate and a server
    that does not speak TLS raise
    ``TlsHandshakeError`` (the CLI's TLS hint matches on it); a plaintext client against a TLS
    port is a plain lost connection."""
    with trio.fail_after(TEST_TIMEOUT):
        endpoint, paths = await start_tls_cluster(nursery, tmp_path)
        other = mint_cluster_certs(tmp_path / "other", DOMAIN, spu_names=[], client_cns=["bob"])
        untrusted = TlsVerified(DOMAIN, key=str(other["client_bob_key"]),
                                cert=str(other["client_bob_cert"]), ca_cert=str(other["ca_cert"]))
        misnamed = TlsVerified("elsewhere.local", key=str(paths["client_alice_key"]),
                               cert=str(paths["client_alice_cert"]), ca_cert=str(paths["ca_cert"]))
        # trusts the server, but the server refuses its certificate: with TLS 1.3 that alert
        # arrives on the first read after the handshake
        refused = TlsVerified(DOMAIN, key=str(other["client_bob_key"]),
                              cert=str(other["client_bob_cert"]), ca_cert=str(paths["ca_cert"]))
        for tls in (untrusted, misnamed, refused):
            with pytest.raises(TlsHandshakeError):
                async with fluvial.connect(endpoint=endpoint, tls=tls, request_timeout=5):
                    pass
        with trio.socket.socket() as listener:
            await listener.bind(("127.0.0.1", 0))
            listener.listen()
            plain_port = listener.getsockname()[1]
            nursery.start_soon(_accept_and_answer_plaintext, listener)
            with pytest.raises(TlsHandshakeError):
                async with fluvial.connect(endpoint=f"127.0.0.1:{plain_port}", tls=untrusted,
                                           request_timeout=5):
                    pass
        with pytest.raises(fluvial.ConnectionLost) as plain:
            async with fluvial.connect(endpoint=endpoint, request_timeout=5):
                pass
        assert not isinstance(plain.value, TlsHandshakeError)
        nursery.cancel_scope.cancel()


async def _accept_and_answer_plaintext(listener):
    """A server that does not speak TLS: it answers the ClientHello with plain bytes."""
    sock, _ = await listener.accept()
    with sock:
        await sock.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
