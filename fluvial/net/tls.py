"""``ssl.SSLContext`` builders for servers and clients, from PEM file paths.

Small on purpose: TLS 1.2 or later, certificates from files, optional mutual TLS. ``serve_tcp``
and ``open_connection`` take the contexts these return; ``ClusterTls`` builds them from the files
``fluvial cluster certs`` lays out. Who a certificate is and what it may do is ``fluvial.access``'s.
"""

from __future__ import annotations

import os
import ssl

PathLike = str | os.PathLike[str]


def server_ssl_context(cert_file: PathLike, key_file: PathLike, *, ca_file: PathLike | None = None,
                       require_client_cert: bool = False) -> ssl.SSLContext:
    """A server context presenting ``cert_file`` (the chain, leaf first) with ``key_file``.

    Args:
        ca_file: CA certificates that client certificates are verified against.
        require_client_cert: mutual TLS: refuse clients without a certificate signed by
            ``ca_file``. Without it, a client certificate signed by ``ca_file`` is verified and
            shown in ``ServerConnection.peer_cert`` when sent, and not asked for otherwise.

    Raises:
        ValueError: ``require_client_cert`` without ``ca_file``.
        OSError, ssl.SSLError: a file is missing or does not hold what it should.
    """
    if require_client_cert and ca_file is None:
        raise ValueError("require_client_cert needs ca_file to verify client certificates")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    if ca_file is not None:
        ctx.load_verify_locations(cafile=os.fspath(ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(ca_file: PathLike | None = None, *, cert_file: PathLike | None = None,
                       key_file: PathLike | None = None,
                       check_hostname: bool = True) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca_file`` (the system CAs if None).

    Args:
        cert_file, key_file: a client certificate for mutual TLS (``key_file`` may be omitted
            when ``cert_file`` holds the key too).
        check_hostname: require the certificate to name the host dialled (``server_hostname``);
            turn off only for tests against certificates without the right names.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca_file is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.load_verify_locations(cafile=os.fspath(ca_file))
    if cert_file is not None:
        ctx.load_cert_chain(os.fspath(cert_file), None if key_file is None else os.fspath(key_file))
    elif key_file is not None:
        raise ValueError("key_file without cert_file")
    return ctx


def common_name(peer_cert: dict | None) -> str | None:
    """The subject commonName of a certificate as ``getpeercert()`` returns it, or None."""
    if not peer_cert:
        return None
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class ClusterTls:
    """The TLS material of one cluster member, as ``fluvial cluster certs`` lays it out in a
    directory: ``ca.crt``; ``server.crt``/``.key`` for public listeners; ``<member>.crt``/``.key``
    (serverAuth + clientAuth) for the private listener and for connections to other members.

    Args:
        directory: where the files are.
        member: this member's name (``sc`` or the SPU's name, e.g. ``custom-spu-5001``).
        domain: the name servers are dialled by (their certificates carry it as a SAN).
        anonymous_clients: accept public clients that present no certificate (they are then the
            principal ``anonymous``); otherwise a client certificate is required.
    """

    def __init__(self, directory: PathLike, member: str, domain: str = "fluvial.local", *,
                 anonymous_clients: bool = False):
        self.dir = os.fspath(directory)
        self.member, self.domain = member, domain
        self.anonymous_clients = anonymous_clients

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def public_server_context(self) -> ssl.SSLContext:
        return server_ssl_context(self._path("server.crt"), self._path("server.key"),
                                  ca_file=self._path("ca.crt"),
                                  require_client_cert=not self.anonymous_clients)

    def private_server_context(self) -> ssl.SSLContext:
        return server_ssl_context(self._path(f"{self.member}.crt"), self._path(f"{self.member}.key"),
                                  ca_file=self._path("ca.crt"), require_client_cert=True)

    def member_client_context(self) -> ssl.SSLContext:
        return client_ssl_context(self._path("ca.crt"), cert_file=self._path(f"{self.member}.crt"),
                                  key_file=self._path(f"{self.member}.key"))
