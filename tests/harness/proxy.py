"""A TCP proxy on 127.0.0.1 whose link a test can cut and heal: a network partition in one process.

Put a ``TcpProxy`` between two members and point one of them at the proxy's port instead of the
other's (an SPU's ``sc_port``, or its ``advertised_private_port`` for its followers). Then:

* ``cut()`` closes every connection the proxy carries and refuses new ones (each is accepted and
  closed at once, so the peer sees the connection end before any byte is exchanged);
* ``heal()`` lets new connections through again (the members reconnect on their own).

The target may be unknown when the proxy starts (a server bound to port 0 behind it): until
``target`` is set, connections are refused as if the link were cut.

    async with open_proxy(("127.0.0.1", sc_private_port)) as proxy:
        config.sc_port = proxy.port
        ...
        proxy.cut()      # the member loses the SC
        proxy.heal()

Everything runs in the caller's trio run; leaving ``open_proxy`` closes the listener and every
connection.
"""

from __future__ import annotations

import contextlib

import trio

#: Bytes read from one side before they are written to the other.
CHUNK_BYTES = 64 * 1024


class TcpProxy:
    """Forwards every connection accepted on ``port`` to ``target`` while the link is up.

    Attributes:
        target: (host, port) to forward to; None refuses every connection.
        port: the listening port (set by ``serve``).
        accepted: connections accepted so far (refused ones included).
        forwarded: connections that reached the target.
    """

    def __init__(self, target: tuple[str, int] | None = None, host: str = "127.0.0.1"):
        self.target = target
        self.host = host
        self.port = 0
        self.accepted = 0
        self.forwarded = 0
        self._cut = False
        self._links: set[trio.CancelScope] = set()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Close every carried connection now and refuse new ones until ``heal``."""
        self._cut = True
        for scope in list(self._links):
            scope.cancel()

    def heal(self) -> None:
        """Accept and forward new connections again."""
        self._cut = False

    @property
    def open_links(self) -> int:
        """Connections being carried (or being connected to the target) right now."""
        return len(self._links)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``host`` (OS-chosen port) until cancelled; ``task_status.started(port)``."""
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        async with client:
            with trio.CancelScope() as scope:
                # registered before the first await: a cut() from now on reaches this link
                self._links.add(scope)
                try:
                    if self._cut or self.target is None:
                        return
                    try:
                        upstream = await trio.open_tcp_stream(*self.target)
                    except OSError:
                        return
                    async with upstream:
                        self.forwarded += 1
                        async with trio.open_nursery() as pumps:
                            pumps.start_soon(_pump, client, upstream, pumps.cancel_scope)
                            pumps.start_soon(_pump, upstream, client, pumps.cancel_scope)
                finally:
                    self._links.discard(scope)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, both: trio.CancelScope) -> None:
    """Copy ``src`` to ``dst`` until either side ends; then end the other direction too."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await src.receive_some(CHUNK_BYTES):
            await dst.send_all(data)
    both.cancel()


@contextlib.asynccontextmanager
async def open_proxy(target: tuple[str, int] | None = None, host: str = "127.0.0.1"):
    """A serving ``TcpProxy`` for the body of the block."""
    proxy = TcpProxy(target, host)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
