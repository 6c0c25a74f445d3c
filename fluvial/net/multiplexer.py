"""The client side of a Fluvio connection: many requests and streams over one socket.

Theory of operation
-------------------
``open_multiplexer(stream)`` owns a nursery with two tasks around a sans-IO
``fluvial.protocol.connection.ClientProtocol``:

* **The reader** feeds ``receive_some()`` into the protocol object, which routes every complete
  frame by its correlation id (the first 4 payload bytes) to the waiter registered under it.
  A request's waiter gets one frame. A stream's waiter is a channel of ``max_queued_frames``
  (16) frames that keeps receiving until the stream is closed; when it is full the reader waits,
  which stalls every response on this connection (as Fluvio's dispatcher does), so a stream's
  owner must keep reading or close it. Frames for ids nobody waits for are dropped.
* **The writer** takes whole frames from a bounded channel and writes them. A caller never
  awaits while it writes to the socket: a caller that is cancelled (a timeout) therefore never
  leaves half a frame on the wire; its frame is either not queued at all or written whole, and a
  late answer is dropped. (This is why the client uses a writer task where the server uses a
  lock.)
* **Direct writes.** On a plain TCP stream with nothing queued for the writer (no frame waiting,
  none being written), the caller writes its frame itself with one non-blocking ``writev`` of its
  pieces (a producer's large batches are pieces of their own, never copied into the frame),
  without awaiting: the frame reaches the kernel one scheduler round earlier (the writer task is not
  woken). Whatever the kernel does not take (a full socket buffer) is queued for the writer as
  the first thing it writes, so frames stay whole and in order; since nothing awaits between the
  check and the write, no other task's frame can come between. On TLS the same, with
  ``TlsStream.send_now`` (encrypt, then one write; the ciphertext the kernel did not take is
  queued for the writer, which sends it with ``send_rest`` under the TLS stream's send lock).
  Test streams always go through the writer.
* **Notifications** (``notify``): a request whose answer nobody waits for (the consumer's
  offset acknowledgements) is written like any other, and its answer is dropped on arrival.
* **Responses are decoded by the caller**, in its own task, with the version it sent. A response
  that does not decode fails that call only.
* **When the connection ends** (EOF, reset, a bad frame from the server, ``aclose``, leaving the
  ``async with``), every waiting call raises ``ConnectionLost``, every stream raises it after the
  frames it already queued, and later calls raise it at once. Nothing is raised into the body of
  the ``async with``: the connection just becomes unusable (``is_open`` turns false) and the owner
  reconnects.

Correlation ids are assigned here, so callers pass request objects, not frames.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from fluvial.errors import ConnectionLost
from fluvial.net.errors import ConnectError, RequestTimeout
from fluvial.net.tls import TLS_RECEIVE_BYTES, TlsStream
from fluvial.protocol.api import ApiVersionsRequest, ApiVersionsResponse, decode_response
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.connection import ClientProtocol, ClientProtocolStatistics
from fluvial.protocol.frame import DEFAULT_MAX_FRAME_BYTES, IOV_MAX, unsent

log = logging.getLogger(__name__)

DEFAULT_STREAM_QUEUE_FRAMES = 16
_SEND_QUEUE_FRAMES = 64
_RECEIVE_BYTES = 64 * 1024
_COALESCE_BYTES = 256 * 1024


class _Reply:
    """The waiter of one request: one payload or one error."""

    __slots__ = ("event", "payload", "error")

    def __init__(self):
        self.event = trio.Event()
        self.payload: bytes | None = None
        self.error: ConnectionLost | None = None

    def deliver(self, payload: bytes) -> None:
        self.payload = payload
        self.event.set()

    def fail(self, error: ConnectionLost) -> None:
        self.error = error
        self.event.set()


class _StreamSink:
    """The waiter of a stream: the sending side of its bounded channel."""

    __slots__ = ("send_channel", "correlation_id")

    def __init__(self, send_channel: trio.MemorySendChannel[bytes]):
        self.send_channel = send_channel
        self.correlation_id = 0

    def fail(self, error: ConnectionLost) -> None:
        self.send_channel.close()


class _Ciphertext:
    """What ``TlsStream.send_now`` wrote in part: the writer sends the rest as it is."""

    __slots__ = ("rest",)

    def __init__(self, rest: memoryview):
        self.rest = rest


class ClientConnection:
    """A multiplexed connection; create it with ``open_connection`` or ``open_multiplexer``.

    Attributes:
        versions: the server's ApiVersionsResponse once ``handshake()`` has run, else None.
        peer: a description of the other end, for messages.
    """

    def __init__(self, stream: trio.abc.Stream, *, client_id: str = "fluvial",
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, peer: str = "server"):
        self.peer = peer
        self.versions: ApiVersionsResponse | None = None
        self._stream = stream
        self._protocol = ClientProtocol(client_id=client_id, max_frame_bytes=max_frame_bytes)
        self._outgoing_send, self._outgoing_receive = trio.open_memory_channel[bytes](
            _SEND_QUEUE_FRAMES)
        # frames handed to the writer and not yet written: a caller writes directly only at 0
        self._queued = 0
        # the socket a caller may write to directly (plain TCP only), else -1
        self._direct_fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        self._tls = stream if type(stream) is TlsStream else None  # direct writes: send_now
        self._lost: ConnectionLost | None = None
        self._closed = trio.Event()
        self._io_scope = trio.CancelScope()

    def __repr__(self) -> str:
        return f"<ClientConnection to {self.peer}{'' if self.is_open else ' (closed)'}>"

    # ---------------------------------------------------------------------------------- state

    @property
    def is_open(self) -> bool:
        return self._lost is None

    async def wait_closed(self) -> None:
        """Return once the connection has ended (for any reason)."""
        await self._closed.wait()

    def statistics(self) -> ClientProtocolStatistics:
        return self._protocol.statistics()

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise ConnectionLost(detail=self._lost.detail) from self._lost

    def _lost_by(self, exc: BaseException) -> None:
        """The stream broke: fail with a ConnectionLost whose cause is what broke it, so a caller
        can tell by type, e.g. a TLS alert on the first read after the handshake."""
        lost = ConnectionLost(detail=f"connection to {self.peer} lost: {_cause(exc)}")
        lost.__cause__ = exc
        self._fail(lost)

    def _fail(self, error: ConnectionLost) -> None:
        """End the connection: fail every waiter, stop the I/O tasks. Idempotent."""
        if self._lost is not None:
            return
        self._lost = error
        log.debug("%r: %s", self, error)
        for sink in self._protocol.fail_all():
            sink.fail(error)
        self._outgoing_receive.close()  # callers blocked on a full queue get BrokenResourceError
        self._io_scope.cancel()
        self._closed.set()

    async def aclose(self) -> None:
        """Close the connection; pending calls and streams get ``ConnectionLost``."""
        self._fail(ConnectionLost(detail=f"connection to {self.peer} was closed by the client"))
        await trio.lowlevel.checkpoint()

    # ---------------------------------------------------------------------------------- I/O tasks

    async def _run(self) -> None:
        try:
            with self._io_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._writer)
        finally:
            self._fail(ConnectionLost(detail=f"connection to {self.peer} was closed"))
            await trio.aclose_forcefully(self._stream)

    async def _reader(self) -> None:
        protocol = self._protocol
        tls = isinstance(self._stream, TlsStream)  # its reads are new buffers, ours to keep
        receive_bytes = TLS_RECEIVE_BYTES if tls else _RECEIVE_BYTES
        try:
            while True:
                data = await self._stream.receive_some(protocol.read_size(receive_bytes))
                if not data:
                    self._fail(ConnectionLost(detail=f"connection closed by {self.peer}"))
                    return
                for sink, payload in protocol.receive_data(data, tls):
                    if isinstance(sink, _Reply):
                        sink.deliver(payload)
                        continue
                    try:
                        await sink.send_channel.send(payload)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        protocol.forget(sink.correlation_id)  # the stream was closed meanwhile
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lost_by(exc)
        except DecodeError as exc:
            self._fail(ConnectionLost(detail=f"{self.peer} sent a bad frame: {exc}"))

    async def _writer(self) -> None:
        receive = self._outgoing_receive
        try:
            async for frame in receive:
                if type(frame) is _Ciphertext:  # the rest of a direct TLS write, always first
                    await self._stream.send_rest(frame.rest)
                    self._queued -= 1
                    continue
                # Join what else is already queued into one write, up to a bound.
                batch, size = [frame], len(frame)
                while size < _COALESCE_BYTES:
                    try:
                        more = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    batch.append(more)
                    size += len(more)
                await self._stream.send_all(batch[0] if len(batch) == 1 else b"".join(batch))
                self._queued -= len(batch)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lost_by(exc)

    # ---------------------------------------------------------------------------------- requests

    def _write_directly(self, pieces: list[bytes]) -> bool:
        """Write the frame ``pieces`` from the caller when the writer is idle on a plain TCP or
        TLS stream (see the module docstring), with one writev; False if it must be queued
        instead. Never awaits: no other frame can start between the check and the write, and no
        cancellation can cut the frame."""
        if self._queued:
            return False
        if self._direct_fd < 0:
            return self._tls is not None and self._send_tls_now(pieces)
        if len(pieces) > IOV_MAX:
            return False
        try:
            sent = os.writev(self._direct_fd, pieces)
        except BlockingIOError:
            return False
        except OSError:
            return False  # the writer meets the error too, and ends the connection
        rest = unsent([memoryview(p) for p in pieces], sent)
        if rest:  # the rest goes first, before any later frame
            self._queue_rest(memoryview(b"".join(rest)))
        return True

    def _send_tls_now(self, pieces: list[bytes]) -> bool:
        """``_write_directly`` on TLS: encrypted and written at once, or False."""
        rest = self._tls.send_now(pieces)
        if rest is None:
            return False
        if rest and not self._queue_rest(_Ciphertext(rest)):  # the send lock is held till it goes
            self._tls.drop_rest("the connection ended with a frame half written")
        return True

    def _queue_rest(self, rest: memoryview | _Ciphertext) -> bool:
        """Queue what a direct write left, for the writer to send first (the queue is empty: a
        direct write happens only then). False if the connection is ending: the caller's wait
        learns it."""
        self._queued += 1
        try:
            self._outgoing_send.send_nowait(rest)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._queued -= 1
            return False
        return True

    async def _queue(self, pieces: list[bytes]) -> None:
        """Hand the frame ``pieces`` to the writer, joined (or write them now, when
        ``_write_directly`` may)."""
        if self._write_directly(pieces):
            return
        self._queued += 1
        try:
            await self._outgoing_send.send(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        except BaseException:
            self._queued -= 1  # not queued: cancelled, or the connection ended
            raise

    async def _submit(self, req: Any, version: int, sink: Any, client_id: str | None,
                      stream: bool) -> int:
        self._raise_if_lost()
        corr, pieces = self._protocol.start_request(req, version, sink, client_id=client_id,
                                                   stream=stream)
        if stream:
            sink.correlation_id = corr
        try:
            await self._queue(pieces)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._protocol.forget(corr)
            self._raise_if_lost()
            raise
        except BaseException:  # cancelled before the frame was queued: it will never be sent
            self._protocol.forget(corr)
            raise
        return corr

    async def notify(self, req: Any, version: int | None = None, *,
                     client_id: str | None = None) -> None:
        """Send ``req`` without waiting for its answer, which is dropped when it arrives: for
        requests whose answer changes nothing for the caller (the consumer's UpdateOffsets).
        Returns once the frame is written or queued.

        Raises:
            ConnectionLost: the connection has ended.
        """
        self._raise_if_lost()
        version = self.version_for(type(req)) if version is None else version
        corr, pieces = self._protocol.start_request(req, version, None, client_id=client_id)
        self._protocol.forget(corr)  # before the answer can arrive: it is dropped
        try:
            await self._queue(pieces)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._raise_if_lost()
            raise
        await trio.lowlevel.checkpoint()

    def lookup_version(self, request_cls: type) -> int | None:
        """Fluvio's lookup_version against ``self.versions``; None if the server has no usable
        version (or ``handshake()`` has not run)."""
        if self.versions is None:
            return None
        return self.versions.lookup_version(request_cls.API_KEY, request_cls.MIN_API_VERSION,
                                            request_cls.MAX_API_VERSION)

    def version_for(self, request_cls: type) -> int:
        """The version to send ``request_cls`` with: the negotiated one, else its default."""
        version = self.lookup_version(request_cls)
        return request_cls.DEFAULT_API_VERSION if version is None else version

    async def send_request(self, req: Any, version: int | None = None, *,
                           client_id: str | None = None, timeout: float | None = None) -> bytes:
        """Send ``req`` and return the raw response payload (correlation id included).

        Args:
            version: the api_version for the header and body; None means ``version_for``.
            client_id: the header's client_id; None means the connection's.
            timeout: seconds to wait for the answer; None waits as long as the connection lives.

        Raises:
            RequestTimeout: no answer within ``timeout``; the connection stays usable.
            ConnectionLost: the connection ended before the answer came.
        """
        version = self.version_for(type(req)) if version is None else version
        reply = _Reply()
        corr = 0
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            corr = await self._submit(req, version, reply, client_id, stream=False)
            try:
                await reply.event.wait()
            finally:
                if not reply.event.is_set():
                    self._protocol.forget(corr)
        if scope.cancelled_caught:
            raise RequestTimeout(timeout, f"no response from {self.peer} to {type(req).__name__} "
                                          f"(correlation id {corr}) within {timeout}s")
        if reply.error is not None:
            raise ConnectionLost(detail=reply.error.detail) from reply.error
        return reply.payload

    async def call(self, req: Any, version: int | None = None, *, client_id: str | None = None,
                   timeout: float | None = None) -> Any:
        """Send ``req`` and return its decoded ``type(req).Response``.

        Raises:
            RequestTimeout, ConnectionLost: as ``send_request``.
            DecodeError: the response does not decode (this call fails; the connection lives on).
        """
        version = self.version_for(type(req)) if version is None else version
        payload = await self.send_request(req, version, client_id=client_id, timeout=timeout)
        return decode_response(payload, type(req).Response, version)[1]

    def open_stream(self, req: Any, version: int | None = None, *, client_id: str | None = None,
                    max_queued_frames: int = DEFAULT_STREAM_QUEUE_FRAMES) -> ResponseStream:
        """A stream request: ``async with conn.open_stream(req) as s: async for resp in s: ...``.

        The request is sent on entering the ``async with``; every response frame carrying its
        correlation id is decoded as ``type(req).Response``. Leaving the block (or ``aclose()``)
        unregisters the id; frames that arrive for it later are dropped.
        """
        version = self.version_for(type(req)) if version is None else version
        return ResponseStream(self, req, version, client_id, max_queued_frames)

    async def handshake(self, *, client_id: str | None = None,
                        timeout: float | None = None) -> ApiVersionsResponse:
        """The first exchange: ApiVersions at its default version; the answer is kept as
        ``self.versions`` for ``version_for``.

        Raises:
            FluvialError: the server answered with an error code.
            RequestTimeout, ConnectionLost, DecodeError: as ``call``.
        """
        resp = await self.call(ApiVersionsRequest(), ApiVersionsRequest.DEFAULT_API_VERSION,
                               client_id=client_id, timeout=timeout)
        if not resp.error_code.ok:
            raise resp.error_code.exception()
        self.versions = resp
        return resp


class ResponseStream:
    """The responses to one stream request, decoded, in arrival order."""

    def __init__(self, conn: ClientConnection, req: Any, version: int, client_id: str | None,
                 max_queued_frames: int):
        self._conn = conn
        self._req = req
        self.version = version
        self._client_id = client_id
        self._send, self._receive = trio.open_memory_channel[bytes](max_queued_frames)
        self._sink = _StreamSink(self._send)
        self.correlation_id: int | None = None
        self._closed = False

    async def __aenter__(self) -> ResponseStream:
        if self.correlation_id is not None:
            raise RuntimeError("a ResponseStream is entered only once")
        self.correlation_id = await self._conn._submit(
            self._req, self.version, self._sink, self._client_id, stream=True)
        await trio.lowlevel.checkpoint()  # _submit need not have yielded (a direct write)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving: unregister the correlation id and drop anything queued."""
        if not self._closed:
            self._closed = True
            if self.correlation_id is not None:
                self._conn._protocol.forget(self.correlation_id)
            self._receive.close()
            self._send.close()
        await trio.lowlevel.checkpoint()

    async def receive_payload(self) -> bytes:
        """The next raw response payload (correlation id included).

        Raises:
            ConnectionLost: the connection ended (after the frames already queued were received).
            trio.ClosedResourceError: this stream was closed.
        """
        if self.correlation_id is None:
            raise RuntimeError("enter the stream with 'async with' before receiving")
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            lost = self._conn._lost
            detail = lost.detail if lost is not None else "stream ended"
            raise ConnectionLost(detail=detail) from lost

    async def receive(self) -> Any:
        """The next decoded response; raises as ``receive_payload`` and ``DecodeError``."""
        payload = await self.receive_payload()
        return decode_response(payload, type(self._req).Response, self.version)[1]

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        return await self.receive()


@asynccontextmanager
async def open_multiplexer(stream: trio.abc.Stream, *, client_id: str = "fluvial",
                           max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                           peer: str = "server") -> AsyncIterator[ClientConnection]:
    """Run a ``ClientConnection`` over an already-open stream (TCP, TLS, in-memory, faulty).

    Resource handling: the stream is closed when the block exits, and calls still waiting get
    ``ConnectionLost``.
    """
    conn = ClientConnection(stream, client_id=client_id, max_frame_bytes=max_frame_bytes,
                            peer=peer)
    # The background tasks never raise (they turn failures into ConnectionLost for the waiters),
    # so an exception group holding one exception came from the body: re-raise that exception
    # as it was, so that `except ConnectionLost` around the `async with` works.
    single: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._run)
            try:
                yield conn
            finally:
                conn._fail(ConnectionLost(detail=f"connection to {peer} was closed by the client"))
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        single = group.exceptions[0]
    if single is not None:
        try:
            raise single
        finally:
            single = None


@asynccontextmanager
async def open_connection(host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                          server_hostname: str | None = None, client_id: str = "fluvial",
                          max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                          ) -> AsyncIterator[ClientConnection]:
    """Connect to ``host:port`` (TLS if ``ssl_context`` is given) and multiplex over it.

    Args:
        ssl_context: a client context (``fluvial.net.tls.client_ssl_context``).
        server_hostname: the name the server certificate must carry; defaults to ``host``.
        client_id: the request header's client_id.
        max_frame_bytes: the largest response frame accepted.

    Raises:
        ConnectError: the TCP connection or the TLS handshake failed.
    """
    peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        tcp = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise ConnectError(detail=f"cannot connect to {peer}: {exc}") from exc
    stream: trio.abc.Stream = tcp
    if ssl_context is not None:
        tls = TlsStream(tcp, ssl_context, server_hostname=server_hostname or host)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await trio.aclose_forcefully(tls)
            raise ConnectError(detail=f"TLS handshake with {peer} failed: {_cause(exc)}") from exc
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        stream = tls
    async with open_multiplexer(stream, client_id=client_id, max_frame_bytes=max_frame_bytes,
                                peer=peer) as conn:
        yield conn


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{exc!r} ({cause!r})" if cause is not None else repr(exc)
