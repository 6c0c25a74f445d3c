"""fluvial.net: the trio transport; with the servers, the only code that touches sockets and ssl.

* ``serve_tcp`` / ``serve_connection`` run a framed server; handlers get a ``ServerConnection``.
* ``open_connection`` / ``open_multiplexer`` give a ``ClientConnection`` that multiplexes requests
  and stream responses by correlation id.
* ``server_ssl_context`` / ``client_ssl_context`` build TLS contexts from PEM files.
"""

from fluvial.errors import ConnectionLost
from fluvial.net.errors import ConnectError, LocalProtocolError, RequestTimeout
from fluvial.net.multiplexer import (
    ClientConnection,
    ResponseStream,
    open_connection,
    open_multiplexer,
)
from fluvial.net.server import (
    ServerConnection,
    ServerLimits,
    listener_port,
    serve_connection,
    serve_tcp,
)
from fluvial.net.tls import client_ssl_context, common_name, server_ssl_context

__all__ = [
    "ClientConnection",
    "ConnectError",
    "ConnectionLost",
    "LocalProtocolError",
    "RequestTimeout",
    "ResponseStream",
    "ServerConnection",
    "ServerLimits",
    "client_ssl_context",
    "common_name",
    "listener_port",
    "open_connection",
    "open_multiplexer",
    "serve_connection",
    "serve_tcp",
    "server_ssl_context",
]
