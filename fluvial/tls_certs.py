"""Minting a cluster's TLS certificates (a CA and its leaves), for `fluvial cluster certs` and tests.

Theory of operation
-------------------
A ``CA`` holds a self-signed root (or, from ``CA.create_child_ca``, an intermediate) and issues leaf
certificates (``LeafCert``). Everything lives in memory as PEM bytes; ``write`` puts it on disk for
processes that want files (the official fluvio client, ``fluvial cluster start --tls``). Keys are EC
P-256: fast to generate and accepted by every TLS stack involved (../shared/fluvio-protocol README
§6.5.2 saw ECDHE-ECDSA negotiated with them).

The three leaf kinds match what a fluvial cluster needs (README §6.5.5):

* ``issue_server_cert(*hosts)``: what the SC and SPU public ports present. SANs are ``hosts``, each
  recognised as an IP address or a DNS name (wildcards such as ``*.fluvial.local`` allowed). KU
  digitalSignature + keyEncipherment, EKU serverAuth.
* ``issue_client_cert(cn)``: what a client presents for mutual TLS. EKU clientAuth; the CN is the
  principal the server reads.
* ``issue_member_cert(cn, *hosts)``: what cluster members present to each other (SC <-> SPU,
  SPU <-> SPU), where one end is a server and the other a client. EKU serverAuth + clientAuth.

Every issuer takes ``not_before`` / ``not_after`` (so a test can mint an expired or not-yet-valid
certificate) and ``eku`` / ``key_usage`` overrides (so a test can mint a server certificate that is
unsuitable for its purpose, e.g. ``eku=("clientAuth",)``).

The chain of a leaf issued by an intermediate is leaf + intermediates (never the root): that is what a
server must send (§6.5.3). ``LeafCert.cert_pem`` is the leaf alone, ``chain_pem`` the chain.

Usage, much like trustme::

    ca = CA("fluvial test CA")
    server = ca.issue_server_cert("fluvial.local", "*.fluvial.local", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = [
    "CA",
    "LeafCert",
    "mint_cluster_certs",
    "DEFAULT_DOMAIN",
    "DEFAULT_SPU_NAMES",
]

DEFAULT_DOMAIN = "fluvial.local"
#: Fluvio names locally started SPUs ``custom-spu-<id>``; the server certificate's ``*.<domain>``
#: SAN covers any dot-free SPU name, so these only name the member certificates.
DEFAULT_SPU_NAMES = ("custom-spu-5001", "custom-spu-5002", "custom-spu-5003")

#: Default lifetime of a freshly issued certificate.
DEFAULT_VALID_DAYS = 365
#: Certificates start this far in the past, so that small clock skew between processes is harmless.
_BACKDATE = dt.timedelta(hours=1)

_EKU_NAMES: dict[str, ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
}

EkuSpec = Iterable[str | ObjectIdentifier] | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted: the form every consumer accepts (README §6.5.4).
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _general_name(host: str) -> x509.GeneralName:
    """An IP address SAN if ``host`` parses as one, else a DNS name SAN (IDNA-encoded)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host:
        raise ValueError("empty host name in a certificate's SAN list")
    if not host.isascii():
        labels = host.split(".")
        host = ".".join(label if label == "*" else label.encode("idna").decode("ascii") for label in labels)
    return x509.DNSName(host)


def _eku_oids(eku: EkuSpec) -> list[ObjectIdentifier]:
    if eku is None:
        return []
    oids = []
    for usage in eku:
        if isinstance(usage, ObjectIdentifier):
            oids.append(usage)
        elif usage in _EKU_NAMES:
            oids.append(_EKU_NAMES[usage])
        else:
            raise ValueError(f"unknown extended key usage {usage!r}; known: {', '.join(_EKU_NAMES)}")
    return oids


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None, valid_days: int
) -> tuple[dt.datetime, dt.datetime]:
    now = _now()
    start = not_before if not_before is not None else now - _BACKDATE
    end = not_after if not_after is not None else (now if not_before is None else start) + dt.timedelta(days=valid_days)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("not_before/not_after must be timezone-aware datetimes")
    if end <= start:
        raise ValueError(f"not_after ({end.isoformat()}) must be later than not_before ({start.isoformat()})")
    return start, end


def _write_bytes(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path``; private files (keys) are created with mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if private:
        os.chmod(path, 0o600)


def _write_pair(directory: str | os.PathLike[str], stem: str, cert_pem: bytes,
                key_pem: bytes) -> tuple[Path, Path]:
    """Write ``<stem>.crt`` and ``<stem>.key`` (mode 0600) into ``directory``, made if missing."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    _write_bytes(cert_path, cert_pem)
    _write_bytes(key_path, key_pem, private=True)
    return cert_path, key_path


class LeafCert:
    """An issued end-entity certificate and its private key.

    Attributes:
        cert: the ``cryptography`` certificate object.
        cert_pem: the leaf certificate alone, PEM.
        chain_pem: the leaf followed by any intermediate CAs (not the root), PEM. This is what a
            server must present; for a certificate issued by a root it equals ``cert_pem``.
        key_pem: the private key, unencrypted PKCS#8 PEM.
    """

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, intermediates: Sequence[bytes]):
        self.cert = cert
        self._key = key
        self.cert_pem = _cert_pem(cert)
        self.chain_pem = self.cert_pem + b"".join(intermediates)
        self.key_pem = _key_pem(key)

    @property
    def common_name(self) -> str:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    def write(self, directory: str | os.PathLike[str], stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.crt`` (the chain) and ``<stem>.key`` (mode 0600) into ``directory``.

        Returns:
            ``(cert_path, key_path)``.
        """
        return _write_pair(directory, stem, self.chain_pem, self.key_pem)

    def configure_cert(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` present this certificate (with its chain) and key.

        ``SSLContext.load_cert_chain`` only reads files, so the PEM goes through a temporary file
        that is removed at once.
        """
        fd, name = tempfile.mkstemp(prefix="fluvial-cert-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.key_pem + self.chain_pem)
            ctx.load_cert_chain(name)
        finally:
            os.unlink(name)

    def __repr__(self) -> str:
        return f"<LeafCert CN={self.common_name!r} expires={self.cert.not_valid_after_utc.isoformat()}>"


class CA:
    """A certificate authority that issues leaf certificates (and intermediate CAs).

    Args:
        name: the CA's common name.
        not_before, not_after: validity of the CA certificate itself (default: from an hour ago
            for ``valid_days``).
        valid_days: default lifetime, also used for the certificates this CA issues.

    Attributes:
        cert: the CA certificate (``cryptography`` object).
        cert_pem: the CA certificate, PEM. Clients put it first in ``ca_cert``.
        key_pem: the CA's private key, PKCS#8 PEM.
        parent: the issuing CA for an intermediate, else ``None``.
    """

    def __init__(
        self,
        name: str = "fluvial dev CA",
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        valid_days: int = DEFAULT_VALID_DAYS,
        _parent: CA | None = None,
    ):
        self.parent = _parent
        self.valid_days = valid_days
        self._key = _new_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fluvial"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        start, end = _validity(not_before, not_after, valid_days)
        issuer_name = _parent.cert.subject if _parent else subject
        issuer_key = _parent._key if _parent else self._key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            # README §6.5.5: CA:TRUE (critical); KU keyCertSign, cRLSign, digitalSignature.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
        )
        if _parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(_parent._key.public_key()), critical=False
            )
        self.cert = builder.sign(issuer_key, hashes.SHA256())
        self.cert_pem = _cert_pem(self.cert)
        self.key_pem = _key_pem(self._key)

    @property
    def name(self) -> str:
        return str(self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    def _intermediates(self) -> list[bytes]:
        """PEMs of this CA and its ancestors, root excluded: the chain a leaf it issues carries."""
        chain, ca = [], self
        while ca.parent is not None:
            chain.append(ca.cert_pem)
            ca = ca.parent
        return chain

    def create_child_ca(self, name: str, **kwargs) -> CA:
        """Issue an intermediate CA, whose leaves carry it in their ``chain_pem``."""
        kwargs.setdefault("valid_days", self.valid_days)
        return CA(name, _parent=self, **kwargs)

    def issue_cert(
        self,
        *hosts: str,
        cn: str | None = None,
        eku: EkuSpec = ("serverAuth",),
        key_usage: bool = True,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        valid_days: int | None = None,
    ) -> LeafCert:
        """Issue a leaf certificate.

        Args:
            hosts: SAN entries; each is an IP address if it parses as one, else a DNS name.
            cn: subject common name (default: the first host, else ``"fluvial"``).
            eku: extended key usages by name (``"serverAuth"``, ``"clientAuth"``) or OID;
                ``None`` or empty omits the extension.
            key_usage: include KU digitalSignature + keyEncipherment (critical); ``False`` omits KU.
            not_before, not_after: validity window (timezone-aware); default from an hour ago for
                ``valid_days`` (default: the CA's).

        Raises:
            ValueError: an empty host, an unknown EKU name, naive datetimes, or an empty window.
        """
        sans = [_general_name(h) for h in hosts]
        if cn is None:
            # A CN is at most 64 characters; a longer first host still gets its SAN.
            cn = hosts[0] if hosts and len(hosts[0]) <= 64 else "fluvial"
        start, end = _validity(not_before, not_after, self.valid_days if valid_days is None else valid_days)
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fluvial"),
                        x509.NameAttribute(NameOID.COMMON_NAME, cn),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans), critical=False
            )
        if key_usage:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        oids = _eku_oids(eku)
        if oids:
            builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return LeafCert(cert, key, self._intermediates())

    def issue_server_cert(self, *hosts: str, cn: str | None = None, eku: EkuSpec = ("serverAuth",), **kwargs) -> LeafCert:
        """A certificate for a TLS server: SANs ``hosts``, EKU serverAuth (see ``issue_cert``)."""
        if not hosts:
            raise ValueError("a server certificate needs at least one host name or IP address")
        return self.issue_cert(*hosts, cn=cn, eku=eku, **kwargs)

    def issue_client_cert(self, cn: str, *, eku: EkuSpec = ("clientAuth",), **kwargs) -> LeafCert:
        """A certificate a client presents for mutual TLS; ``cn`` is its principal. EKU clientAuth."""
        return self.issue_cert(cn=cn, eku=eku, **kwargs)

    def issue_member_cert(
        self, cn: str, *hosts: str, eku: EkuSpec = ("serverAuth", "clientAuth"), **kwargs
    ) -> LeafCert:
        """A certificate for a cluster member (SC or SPU) that both serves and dials mTLS.

        ``cn`` is the member's principal; ``hosts`` are the SANs it serves under (optional).
        EKU serverAuth + clientAuth.
        """
        return self.issue_cert(*hosts, cn=cn, eku=eku, **kwargs)

    def write(self, directory: str | os.PathLike[str], stem: str = "ca") -> tuple[Path, Path]:
        """Write ``<stem>.crt`` and ``<stem>.key`` (mode 0600) into ``directory``.

        Returns:
            ``(cert_path, key_path)``.
        """
        return _write_pair(directory, stem, self.cert_pem, self.key_pem)

    def configure_trust(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` trust certificates this CA issued (as a server: client certs it accepts)."""
        ctx.load_verify_locations(cadata=self.cert_pem.decode("ascii"))

    def __repr__(self) -> str:
        return f"<CA {self.name!r}{' (intermediate)' if self.parent else ''}>"


def mint_cluster_certs(
    directory: str | os.PathLike[str],
    domain: str = DEFAULT_DOMAIN,
    spu_names: Sequence[str] = DEFAULT_SPU_NAMES,
    client_cns: Sequence[str] = ("admin",),
    extra_hosts: Sequence[str] = (),
    *,
    valid_days: int = DEFAULT_VALID_DAYS,
    ca_name: str | None = None,
) -> dict[str, Path]:
    """Mint everything a TLS-enabled fluvial cluster and its clients need, into ``directory``.

    Files (see certs/README.md for what each is for):

    * ``ca.crt``, ``ca.key``: the cluster CA.
    * ``server.crt``, ``server.key``: presented by the SC and every SPU public port. SANs ``domain``,
      ``*.<domain>``, ``localhost``, ``127.0.0.1`` and ``extra_hosts``.
    * ``sc.crt``/``sc.key`` and ``<spu>.crt``/``<spu>.key`` per SPU name: member certificates
      (serverAuth + clientAuth) for SC <-> SPU and SPU <-> SPU links, CN = the member's name,
      SANs ``<name>.<domain>``, ``domain``, ``*.<domain>``, ``localhost``, ``127.0.0.1`` and extras.
    * ``client-<cn>.crt``/``.key`` per client CN: client certificates for mutual TLS.

    Returns:
        A dict of paths: ``"ca_cert"``, ``"ca_key"``, ``"server_cert"``, ``"server_key"``,
        ``"sc_cert"``, ``"sc_key"``, ``"<spu>_cert"``, ``"<spu>_key"``, ``"client_<cn>_cert"``,
        ``"client_<cn>_key"``.

    Raises:
        ValueError: a name that cannot be a file stem, or a duplicate name.
    """
    directory = Path(directory)
    members = ["sc", *spu_names]
    for name in [*members, *client_cns]:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{name!r} cannot be used as a certificate file name")
    if len(set(members)) != len(members) or len(set(client_cns)) != len(client_cns):
        raise ValueError("SPU names and client CNs must be unique (and no SPU may be named 'sc')")
    if {"ca", "server"} & set(members):
        raise ValueError("no SPU may be named 'ca' or 'server' (those files hold the CA and server certificate)")

    common_hosts = [domain, f"*.{domain}", "localhost", "127.0.0.1", *extra_hosts]
    ca = CA(ca_name or f"fluvial CA for {domain}", valid_days=valid_days)
    paths: dict[str, Path] = {}
    paths["ca_cert"], paths["ca_key"] = ca.write(directory, "ca")
    server = ca.issue_server_cert(*common_hosts, cn=domain)
    paths["server_cert"], paths["server_key"] = server.write(directory, "server")
    for name in members:
        member = ca.issue_member_cert(name, f"{name}.{domain}", *common_hosts)
        paths[f"{name}_cert"], paths[f"{name}_key"] = member.write(directory, name)
    for cn in client_cns:
        client = ca.issue_client_cert(cn)
        paths[f"client_{cn}_cert"], paths[f"client_{cn}_key"] = client.write(directory, f"client-{cn}")
    return paths
