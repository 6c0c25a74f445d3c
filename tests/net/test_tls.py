"""TLS and mutual TLS through serve_tcp / open_connection, with certificates minted per test."""

import logging
import ssl

import pytest
import trio

from fluvial.errors import ConnectionLost
from fluvial.net.errors import ConnectError
from fluvial.net.multiplexer import open_connection
from fluvial.net.server import ServerLimits
from fluvial.net.tls import client_ssl_context, common_name, server_ssl_context
from fluvial.protocol.api import encode_request


async def test_tls_round_trip_without_client_certificate(start_echo_server, echo_api, certs):
    E, M = echo_api.EchoRequest, echo_api.Mode
    server = await start_echo_server(
        ssl_context=server_ssl_context(certs.server_cert, certs.server_key))
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", server.port,
                                   ssl_context=client_ssl_context(certs.ca)) as conn:
            await conn.handshake()
            resp = await conn.call(E(0, "", M.WHOAMI), 0)
            assert (resp.value, resp.text) == (0, "")  # no client certificate
            async with conn.open_stream(E(0, "", M.STREAM, 3), 0) as stream:
                assert [(await stream.receive()).value for _ in range(3)] == [0, 1, 2]
        # server_hostname: the certificate names "localhost" too.
        async with open_connection("127.0.0.1", server.port, server_hostname="localhost",
                                   ssl_context=client_ssl_context(certs.ca)) as conn:
            assert (await conn.call(E(8), 0)).value == 8


async def test_mutual_tls_shows_the_client_identity(start_echo_server, echo_api, certs):
    E, M = echo_api.EchoRequest, echo_api.Mode
    server = await start_echo_server(ssl_context=server_ssl_context(
        certs.server_cert, certs.server_key, ca_file=certs.ca, require_client_cert=True))
    client_ctx = client_ssl_context(certs.ca, cert_file=certs.client_cert,
                                    key_file=certs.client_key)
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", server.port, ssl_context=client_ctx) as conn:
            resp = await conn.call(E(0, "", M.WHOAMI), 0)
            assert resp.text == "alice"
            assert resp.value > 100  # the DER certificate's length
        assert common_name(server.connections[0].peer_cert) == "alice"


async def test_mutual_tls_refuses_a_client_without_certificate(start_echo_server, echo_api, certs):
    server = await start_echo_server(ssl_context=server_ssl_context(
        certs.server_cert, certs.server_key, ca_file=certs.ca, require_client_cert=True))
    with trio.fail_after(10):
        # With TLS 1.3 the refusal arrives after the client's side of the handshake is done.
        with pytest.raises(ConnectionLost):
            async with open_connection("127.0.0.1", server.port,
                                       ssl_context=client_ssl_context(certs.ca)) as conn:
                await conn.call(echo_api.EchoRequest(1), 0)
        assert server.started == 0


async def test_client_refuses_an_untrusted_or_misnamed_server(start_echo_server, certs):
    server = await start_echo_server(
        ssl_context=server_ssl_context(certs.server_cert, certs.server_key))
    with trio.fail_after(10):
        with pytest.raises(ConnectError, match="TLS handshake"):
            async with open_connection("127.0.0.1", server.port,
                                       ssl_context=client_ssl_context(certs.other_ca)):
                pass
        with pytest.raises(ConnectError, match="TLS handshake"):
            async with open_connection("127.0.0.1", server.port, server_hostname="example.com",
                                       ssl_context=client_ssl_context(certs.ca)):
                pass


async def test_plaintext_client_against_tls_port_fails_cleanly(start_echo_server, echo_api,
                                                               certs, caplog):
    caplog.set_level(logging.INFO, logger="fluvial.net")
    server = await start_echo_server(
        ssl_context=server_ssl_context(certs.server_cert, certs.server_key))
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", server.port) as plain:
            with pytest.raises(ConnectionLost):
                await plain.call(echo_api.EchoRequest(1), 0)
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as raw:
            await raw.send_all(encode_request(echo_api.EchoRequest(1), 1, 0))
            assert await echo_api.read_until_closed(raw) == b""
        # The server still serves TLS clients.
        async with open_connection("127.0.0.1", server.port,
                                   ssl_context=client_ssl_context(certs.ca)) as conn:
            assert (await conn.call(echo_api.EchoRequest(2), 0)).value == 2
    assert "TLS handshake" in caplog.text


async def test_tls_client_against_plaintext_server_raises_connect_error(echo_server, certs):
    with trio.fail_after(10):
        with pytest.raises(ConnectError, match="TLS handshake"):
            async with open_connection("127.0.0.1", echo_server.port,
                                       ssl_context=client_ssl_context(certs.ca)):
                pass


async def test_tls_handshake_timeout_closes_a_silent_client(start_echo_server, echo_api, certs,
                                                            autojump_clock):
    server = await start_echo_server(
        ssl_context=server_ssl_context(certs.server_cert, certs.server_key),
        limits=ServerLimits(tls_handshake_timeout_seconds=3, first_frame_timeout_seconds=None))
    with trio.fail_after(60):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as raw:
            start = trio.current_time()
            assert await echo_api.read_until_closed(raw) == b""
            assert 3 <= trio.current_time() - start < 4


def test_context_builders_check_their_arguments(certs):
    with pytest.raises(ValueError):
        server_ssl_context(certs.server_cert, certs.server_key, require_client_cert=True)
    with pytest.raises(ValueError):
        client_ssl_context(certs.ca, key_file=certs.client_key)
    ctx = server_ssl_context(certs.server_cert, certs.server_key, ca_file=certs.ca)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = client_ssl_context(certs.ca)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert common_name(None) is None and common_name({}) is None
