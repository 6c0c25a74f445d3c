"""Access control at the connection: who is on the other end, and what ``fluvial.auth`` lets it do.

The servers share these rules, so they live once, next to the policy: a connection's principal is
its verified client certificate's CN (``principal_of``), ``allowed`` asks the policy for it, one
naming rule says which member certificate speaks for which SPU (``spu_member_name``), and a
plaintext private port, which cannot tell members apart, binds loopback (``private_bind_host``).
TLS contexts themselves are ``fluvial.net.tls``'s.
"""

from __future__ import annotations

import ipaddress

from fluvial.auth import ANONYMOUS
from fluvial.net.tls import common_name

__all__ = ["LOOPBACK", "allowed", "is_loopback", "principal_of", "private_bind_host",
           "speaks_for_spu", "spu_member_name"]

LOOPBACK = "127.0.0.1"


def principal_of(conn) -> str:
    """Who is on the other end of a server connection: the verified client certificate's CN,
    or ``anonymous`` (no TLS, or no client certificate)."""
    return common_name(getattr(conn, "peer_cert", None)) or ANONYMOUS


def allowed(policy, conn, action: str, kind: str | None = None, name: str | None = None) -> bool:
    """``policy.allows`` for this connection's principal; no policy allows everything."""
    if policy is None:
        return True
    return policy.allows(principal_of(conn), action, kind=kind, name=name)


def spu_member_name(spu_id: int) -> str:
    """The member-certificate CN of SPU ``spu_id`` (``fluvial cluster certs`` mints these).

    The one naming rule: the SC checks a registering SPU against it and an SPU checks the
    follower id of a private request against it, so a member certificate speaks for one SPU only.
    """
    return f"custom-spu-{spu_id}"


def speaks_for_spu(conn, spu_id: int) -> bool:
    """Whether this connection's verified certificate is SPU ``spu_id``'s member certificate."""
    return principal_of(conn) == spu_member_name(spu_id)


def is_loopback(host: str) -> bool:
    """Whether a listener bound to ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def private_bind_host(host: str, private_host: str | None, tls: bool) -> str:
    """Where a private (member-to-member) listener binds.

    A plaintext private port trusts whoever connects (it cannot tell members apart), so without
    TLS it binds loopback unless ``private_host`` says otherwise explicitly; with TLS (mutual, with
    member identities) it binds ``private_host`` or else ``host`` like the public listener.
    """
    if private_host is not None:
        return private_host
    return host if tls else LOOPBACK
