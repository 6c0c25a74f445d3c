"""The server side of a Fluvio connection: accept, frame, dispatch, write.

Theory of operation
-------------------
``serve_tcp`` listens and runs ``serve_connection`` for each accepted socket. A connection is:

* **One reader task.** It feeds ``receive_some()`` into a ``FrameDecoder`` and, for every
  complete frame, starts ``handler(conn, payload)`` as its own task, because a request may run
  for a long time (a produce waiting for the high watermark, a stream fetch or watch pushing
  until the connection closes). At most ``limits.max_in_flight`` handlers run at once; when that
  many are running the reader stops reading the socket until one finishes, so a client that
  floods us is slowed by TCP, not buffered in memory.
* **Quick requests run in the reader.** A handler with a ``runs_inline(payload)`` method that
  says yes for a frame (requests that never wait, such as a consumer's acknowledgement) is run
  by the reader itself, before it reads on: no task to start and finish per request.
* **Handlers start in arrival order.** The reader queues each frame and starts a task for it;
  the tasks are alike, and each takes the oldest frame not yet taken when it starts, so
  whatever order trio runs new tasks in, each handler runs until its first blocking ``await``
  before the next frame's handler starts (no pause in the reader per frame, and none of
  ``Nursery.start``'s machinery: a fifth of the SPU's dispatch cost). A quick request waits
  until the frames before it have started, then runs in the reader. Work done before that point
  (a synchronous append to a log; acquiring a ``trio.StrictFIFOLock``, which takes the lock before
  it yields) happens in the order the client sent the requests, as in Fluvio, whose SPU handles
  produce requests one after the other.
* **Writes are whole and serialised.** ``send``, ``send_parts``, ``send_regions`` and ``sendfile``
  hold one ``trio.StrictFIFOLock``, so frames for different correlation ids (stream pushes and
  replies) never interleave. Each checks that the bytes it is given form exactly one frame before
  writing any. A write that fails or is cancelled part-way leaves half a frame on the wire: the
  connection is then closed, and later sends raise ``ConnectionLost``.
* **Few syscalls, few copies.** On plain TCP a frame given in pieces leaves in one ``sendmsg``
  (a writev: the pieces are not joined), and file pieces (``FileRegion``) go with
  ``os.sendfile`` straight from the page cache. A frame of memory pieces that finds the lock
  free is written by the caller at once, before any pause (``_write_now``; the pause comes
  after the frame is out, so other tasks still get their turn), and whatever the socket does
  not take is written under the lock, taken with no pause since the write; on TLS the same
  with ``TlsStream.send_now``. Otherwise on TLS every piece is encrypted anyway: the frame is
  one ``TlsStream.send_all_parts`` and file pieces are read with ``os.pread``.
* **Closing.** A connection ends when the peer closes it, when the framing is broken (a negative or
  oversized size prefix), on a timeout, when a handler raises, or when ``conn.close()`` is called.
  Then every running handler is cancelled (they run inside the connection's cancel scope),
  ``conn.closed`` is set and the stream is closed. One connection's end never affects another, and
  nothing a peer sends can end ``serve_tcp``.

Timeouts (``ServerLimits``): the TLS handshake must finish within ``tls_handshake_timeout_seconds``;
the first complete frame must arrive within ``first_frame_timeout_seconds`` of the handshake; after
that the connection is closed when ``idle_timeout_seconds`` pass with no bytes received and no
handler running. A running handler (a watch) keeps a connection alive.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

from fluvial.errors import ConnectionLost
from fluvial.net.errors import LocalProtocolError
from fluvial.protocol.codec import DecodeError
from fluvial.net.tls import TLS_RECEIVE_BYTES, TlsStream
from fluvial.protocol.frame import DEFAULT_MAX_FRAME_BYTES, IOV_MAX, FrameDecoder, unsent

log = logging.getLogger(__name__)

Handler = Callable[["ServerConnection", bytes], Awaitable[None]]

_SIZE = struct.Struct(">i")
_COALESCE_BYTES = 64 * 1024  # parts smaller than this in total are joined into one write
_SENDFILE_CHUNK_BYTES = 1024 * 1024


class FileRegion(NamedTuple):
    """``count`` bytes of the open file ``fd`` from ``offset``: a piece of a frame that
    ``send_regions`` writes from the file, on plain TCP without reading it into Python. The
    file position of ``fd`` is not used or moved."""

    fd: int
    offset: int
    count: int


Piece = bytes | bytearray | memoryview | FileRegion


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds for one server. ``None`` disables a timeout.

    The official client sends no keep-alives, and a producer connection may sit idle between
    sends for as long as the application likes; ``idle_timeout_seconds`` is therefore off by
    default (a client whose connection is closed under it reconnects on the next request).
    """

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_in_flight: int = 128
    max_connections: int = 1024
    max_connections_per_ip: int = 256
    receive_bytes: int = 64 * 1024
    tls_handshake_timeout_seconds: float | None = 10.0
    first_frame_timeout_seconds: float | None = 30.0
    idle_timeout_seconds: float | None = None

    def __post_init__(self):
        for name in ("max_frame_bytes", "max_in_flight", "max_connections",
                     "max_connections_per_ip", "receive_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServerLimits.{name} must be at least 1")


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    in_flight: int
    frames_received: int
    bytes_received: int
    frames_sent: int


class ServerConnection:
    """One accepted connection, as handlers see it.

    Attributes:
        peer: ``(host, port)`` of the client.
        peer_cert: the client's verified certificate as ``ssl.SSLSocket.getpeercert()`` returns
            it, or None (no TLS, no client certificate, or not verified).
        peer_cert_der: the client's certificate in DER form whenever it sent one, verified or not.
        state: a dict for handlers (stream ids, session data); dropped with the connection.
        closed: set when ``close()`` is called or the connection has closed.
        cancel_scope: the scope every handler of this connection runs in.
    """

    def __init__(self, stream: trio.abc.Stream, *, limits: ServerLimits = ServerLimits(),
                 peer: tuple[str, int] | None = None):
        self._stream = stream
        self.limits = limits
        self.peer = peer if peer is not None else _peer_address(stream)
        self.peer_cert: dict | None = None
        self.peer_cert_der: bytes | None = None
        if isinstance(stream, (TlsStream, trio.SSLStream)):
            self.peer_cert = stream.getpeercert() or None
            self.peer_cert_der = stream.getpeercert(binary_form=True)
        self.state: dict[str, Any] = {}
        self.closed = trio.Event()
        self.cancel_scope = trio.CancelScope()
        self._send_lock = trio.StrictFIFOLock()
        self._broken: str | None = None
        self._slots = trio.Semaphore(limits.max_in_flight)
        self._in_flight = 0
        self._unstarted: deque[bytes] = deque()  # frames whose handler's task has not started
        self._caught_up: trio.Event | None = None  # set once every queued frame has started
        self._seen_frame = False
        self._first_frame_deadline = math.inf
        self._read_scope: trio.CancelScope | None = None
        self._frames_received = 0
        self._bytes_received = 0
        self._frames_sent = 0

    def __repr__(self) -> str:
        host, port = self.peer
        return f"<ServerConnection {host}:{port}>"

    # ---------------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Close the connection: cancel every handler, then close the stream. Idempotent."""
        self.closed.set()
        self.cancel_scope.cancel()

    def _break(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
        self.close()

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(self._in_flight, self._frames_received,
                                    self._bytes_received, self._frames_sent)

    # ---------------------------------------------------------------------------------- writing

    def _check_open(self) -> None:
        if self._broken is not None:
            raise ConnectionLost(
                detail=f"connection from {_fmt(self.peer)} is closed: {self._broken}")
        if self.closed.is_set():
            raise ConnectionLost(detail=f"connection from {_fmt(self.peer)} is closed")

    async def send(self, frame: bytes | bytearray | memoryview, *, last: bool = False) -> None:
        """Write one whole frame (size prefix included). ``last``: the calling task ends right
        after (a handler's answer), so a frame written at once needs no pause after it: the
        task's end gives the other tasks their turn.

        Raises:
            LocalProtocolError: ``frame`` is not exactly one frame; nothing was written.
            ConnectionLost: the connection is closed or broke while writing.
        """
        await self.send_regions((frame,), last=last)

    @property
    def zero_copy(self) -> bool:
        """Whether file pieces (``FileRegion``) leave without passing through Python: a plain
        TCP connection where ``os.sendfile`` exists. Over TLS they are read and encrypted."""
        return isinstance(self._stream, trio.SocketStream) and hasattr(os, "sendfile")

    async def send_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Write one frame given as pieces, e.g. ``[prefix, stored_batch, ...]``.

        The first piece starts with the size prefix, and the pieces together hold exactly the
        bytes it announces. They are written without being joined: one ``sendmsg`` on plain
        TCP, one TLS write on TLS.

        Raises:
            LocalProtocolError: the pieces are not exactly one frame; nothing was written.
            ConnectionLost: the connection is closed or broke while writing.
        """
        await self.send_regions(parts)

    async def sendfile(self, prefix: bytes, fd: int, offset: int, count: int) -> None:
        """Write one frame made of ``prefix`` then ``count`` bytes of file ``fd`` from ``offset``
        (``send_regions([prefix, FileRegion(fd, offset, count)])``).

        Raises:
            LocalProtocolError: ``prefix``'s size does not announce ``len(prefix) - 4 + count``.
            ConnectionLost: the connection is closed or broke while writing, or the file ended
                before ``count`` bytes (the frame is then cut short, so the connection is closed).
        """
        await self.send_regions((prefix, FileRegion(fd, offset, count)))

    async def send_regions(self, parts: Sequence[Piece],
                           intact: Callable[[], bool] | None = None, *, last: bool = False) -> None:
        """Write one frame given as pieces of memory and of files (``FileRegion``).

        On plain TCP (``zero_copy``) the memory pieces between two file pieces leave in one
        ``sendmsg`` and the file pieces with ``os.sendfile``; otherwise file pieces are read
        with ``os.pread``, 1 MiB at a time. The descriptors must stay open until this returns.

        ``intact``, when given, is asked before every read or send of file bytes that follows
        an await: False means the file bytes may no longer be the ones the frame counts (the
        log was truncated meanwhile), and the frame is cut there, which closes the connection.
        ``os.sendfile`` does not copy: the kernel sends from the page cache until the peer has
        the bytes, so a caller sends only file bytes that are never rewritten in place (a log's
        batches below its HW); ``intact`` guards the rest of the frame, not what is queued.

        Raises:
            LocalProtocolError: the pieces are not exactly one frame, or a region has a
                negative offset or count; nothing was written.
            ConnectionLost: the connection is closed or broke while writing, a file ended
                before its region did, or ``intact`` said no (the frame is then cut short, so
                the connection is closed).
        """
        total = 0
        for p in parts:
            if isinstance(p, FileRegion):
                if p.count < 0 or p.offset < 0:
                    raise LocalProtocolError(f"sendfile: offset {p.offset} and count {p.count} "
                                             f"must be >= 0")
                total += p.count
            else:
                total += len(p)
        _check_frame(parts[0] if parts else b"", total)
        rest = self._write_now(parts)
        if rest is not None:
            if rest:  # the socket took part of it: the lock is ours since before the write
                try:
                    await self._guarded_write(
                        self._stream.send_rest(rest) if type(rest) is memoryview
                        else _sendmsg_all(self._stream.socket, rest))
                finally:
                    self._send_lock.release()
            elif not last:  # the frame is out; the pause comes after it (as trio's own sends do)
                await trio.lowlevel.cancel_shielded_checkpoint()
            self._frames_sent += 1
            return
        async with self._send_lock:
            self._check_open()
            if self.zero_copy:
                write = self._write_socket(self._stream.socket, parts, intact)
            else:
                write = self._write_copied(parts, intact)
            await self._guarded_write(write)
        self._frames_sent += 1

    def _write_now(self, parts: Sequence[Piece]) -> list | memoryview | None:
        """Write a frame of memory pieces on plain TCP with one ``writev`` and no pause, when the
        send lock is free (on TLS: ``TlsStream.send_now``). Returns None when nothing was written
        (the usual path must), else what the socket did not take: then the send lock is held
        (taken right after the write, with no pause between, so no other frame can come first)
        and the caller writes the rest and releases it (a list of pieces on plain TCP, the
        ciphertext for ``TlsStream.send_rest`` on TLS)."""
        if (self._send_lock.locked() or self._broken is not None or self.closed.is_set()
                or any(isinstance(p, FileRegion) for p in parts)):
            return None
        if not self.zero_copy:
            if type(self._stream) is not TlsStream:
                return None
            rest = self._stream.send_now(parts)
            if rest:
                self._send_lock.acquire_nowait()  # free (checked above), and nothing awaited since
            return rest
        if len(parts) > IOV_MAX:
            return None
        try:
            sent = os.writev(self._stream.socket.fileno(), parts)
        except OSError:  # full (BlockingIOError), or broken: the usual path waits or fails
            return None
        rest = unsent([memoryview(p).cast("B") for p in parts], sent)
        if rest:
            self._send_lock.acquire_nowait()  # free (checked above), and nothing awaited since
        return rest

    async def _guarded_write(self, write: Awaitable[None]) -> None:
        # Called with the send lock held. Any failure or cancellation part-way leaves a partial
        # frame on the wire, so the connection cannot be used for another frame.
        done = False
        try:
            await write
            done = True
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._break(f"write failed: {exc!r}")
            raise ConnectionLost(detail=f"connection from {_fmt(self.peer)} lost while writing: "
                                        f"{exc!r}") from exc
        finally:
            if not done and self._broken is None:
                self._break("a write was interrupted part-way")

    async def _write_socket(self, sock: trio.socket.SocketType, parts: Sequence[Piece],
                            intact: Callable[[], bool] | None) -> None:
        memory: list = []
        for part in parts:
            if isinstance(part, FileRegion):
                if memory:
                    await _sendmsg_all(sock, memory)
                    memory = []
                await self._sendfile_socket(sock, part, intact)
            elif part:
                memory.append(part)
        if memory:
            await _sendmsg_all(sock, memory)

    async def _write_copied(self, parts: Sequence[Piece], intact: Callable[[], bool] | None) -> None:
        """Any stream but plain TCP: file pieces read into memory, the frame written in steps
        of about 1 MiB (one TLS write each: ``TlsStream.send_all_parts``)."""
        pending: list = []
        size = 0
        checked = False  # taking the send lock may have awaited
        for part in parts:
            if not isinstance(part, FileRegion):
                if part:
                    pending.append(part)
                    size += len(part)
                continue
            position, end = part.offset, part.offset + part.count
            while position < end:
                if not checked and intact is not None and not intact():
                    raise _changed(position, end)
                chunk = os.pread(part.fd, min(_SENDFILE_CHUNK_BYTES, end - position), position)
                if not chunk:
                    raise _short_file(position, end)
                pending.append(chunk)
                size += len(chunk)
                position += len(chunk)
                if size >= _SENDFILE_CHUNK_BYTES:
                    await self._write_memory(pending, size)
                    pending, size, checked = [], 0, False
        if pending:
            await self._write_memory(pending, size)

    async def _write_memory(self, parts: list, size: int) -> None:
        if isinstance(self._stream, TlsStream):  # the pieces in one transport write
            await self._stream.send_all_parts(parts)
        elif size <= _COALESCE_BYTES or len(parts) == 1:
            await self._stream.send_all(parts[0] if len(parts) == 1 else b"".join(parts))
        else:
            for part in parts:
                await self._stream.send_all(part)

    async def _sendfile_socket(self, sock: trio.socket.SocketType, region: FileRegion,
                               intact: Callable[[], bool] | None) -> None:
        position, end = region.offset, region.offset + region.count
        checked = False  # the send lock or the memory pieces before this region may have awaited
        while position < end:
            if not checked and intact is not None and not intact():
                raise _changed(position, end)
            checked = True
            try:
                sent = os.sendfile(sock.fileno(), region.fd, position,
                                   min(end - position, _SENDFILE_CHUNK_BYTES))
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                checked = False
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"sendfile failed: {exc}") from exc
            if sent == 0:
                raise _short_file(position, end)
            position += sent
            if position < end:
                await trio.lowlevel.checkpoint()
                checked = False

    # ---------------------------------------------------------------------------------- reading

    def _read_deadline(self) -> float:
        limits = self.limits
        if not self._seen_frame:
            return self._first_frame_deadline
        if self._in_flight or limits.idle_timeout_seconds is None:
            return math.inf
        return trio.current_time() + limits.idle_timeout_seconds

    async def _run(self, handler: Handler) -> None:
        if self.limits.first_frame_timeout_seconds is not None:
            self._first_frame_deadline = (trio.current_time()
                                          + self.limits.first_frame_timeout_seconds)
        try:
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    await self._read_loop(handler, nursery)
                    nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(self._stream)
            self.closed.set()

    async def _read_loop(self, handler: Handler, nursery: trio.Nursery) -> None:
        decoder = FrameDecoder(self.limits.max_frame_bytes)
        inline = getattr(handler, "runs_inline", None)
        receive_bytes = self.limits.receive_bytes
        tls = isinstance(self._stream, TlsStream)  # its reads are new buffers, ours to keep
        if tls:  # decrypted reads are cheaper in fewer, larger steps
            receive_bytes = max(receive_bytes, TLS_RECEIVE_BYTES)
        while True:
            with trio.CancelScope(deadline=self._read_deadline()) as scope:
                self._read_scope = scope
                try:
                    data = await self._stream.receive_some(decoder.read_size(receive_bytes))
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    log.debug("%r: receive failed: %r", self, exc)
                    return
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                what = "idle" if self._seen_frame else "first-frame"
                log.info("%r: %s timeout, closing", self, what)
                return
            if not data:
                log.debug("%r: closed by peer", self)
                return
            self._bytes_received += len(data)
            try:
                frames = decoder.feed(data, tls)
            except DecodeError as exc:
                log.warning("%r: bad frame, closing: %s", self, exc)
                return
            for payload in frames:
                self._seen_frame = True
                self._frames_received += 1
                if inline is not None and inline(payload):
                    if self._unstarted:  # the handlers of the frames before it start first
                        self._caught_up = trio.Event()
                        await self._caught_up.wait()
                    await self._handle(handler, payload)
                    continue
                try:
                    self._slots.acquire_nowait()  # no pause when a slot is free
                except trio.WouldBlock:
                    await self._slots.acquire()
                self._in_flight += 1
                self._unstarted.append(payload)
                nursery.start_soon(self._dispatch, handler)

    async def _dispatch(self, handler: Handler) -> None:
        # the oldest frame not yet taken, whichever task this is: handlers start in arrival order
        payload = self._unstarted.popleft()
        if not self._unstarted and self._caught_up is not None:
            self._caught_up.set()
            self._caught_up = None
        try:
            await self._handle(handler, payload)
        finally:
            self._in_flight -= 1
            self._slots.release()
            if (not self._in_flight and self._read_scope is not None
                    and self.limits.idle_timeout_seconds is not None):
                self._read_scope.deadline = trio.current_time() + self.limits.idle_timeout_seconds

    async def _handle(self, handler: Handler, payload: bytes) -> None:
        try:
            await handler(self, payload)
        except ConnectionLost as exc:
            log.debug("%r: handler stopped, connection lost: %s", self, exc)
            self.close()
        except Exception:
            log.exception("%r: handler failed, closing the connection", self)
            self.close()


async def serve_connection(stream: trio.abc.Stream, handler: Handler, *,
                           limits: ServerLimits = ServerLimits(),
                           peer: tuple[str, int] | None = None) -> None:
    """Serve one already-accepted (and, for TLS, already handshaken) stream until it closes.

    This is what ``serve_tcp`` runs per connection; tests also run it over in-memory streams.

    Resource handling: the stream is closed on return.
    Error handling: returns when the connection ends for any reason; handler exceptions are logged
    and close this connection only. Only cancellation propagates.
    """
    conn = ServerConnection(stream, limits=limits, peer=peer)
    await conn._run(handler)


class _ConnectionGate:
    """Counts open connections, globally and per client IP."""

    def __init__(self, limits: ServerLimits):
        self.limits = limits
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> bool:
        n = self.per_ip.get(ip, 0)
        if self.total >= self.limits.max_connections or n >= self.limits.max_connections_per_ip:
            return False
        self.total += 1
        self.per_ip[ip] = n + 1
        return True

    def release(self, ip: str) -> None:
        self.total -= 1
        n = self.per_ip[ip] - 1
        if n:
            self.per_ip[ip] = n
        else:
            del self.per_ip[ip]


async def serve_tcp(handler: Handler, host: str | None = "127.0.0.1", port: int = 0, *,
                    ssl_context: ssl.SSLContext | None = None,
                    limits: ServerLimits = ServerLimits(),
                    task_status: trio.TaskStatus[list[trio.SocketListener]]
                    = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``host:port`` and serve Fluvio frames to ``handler`` until cancelled.

    Args:
        handler: ``async handler(conn, payload)``, called once per request frame with the payload
            (size prefix removed); it answers with ``conn.send(...)``.
        host: address to bind; None binds every interface.
        port: 0 picks a free port; see ``listener_port``.
        ssl_context: a server context (``fluvial.net.tls.server_ssl_context``) to speak TLS.
        limits: frame size, concurrency, connection counts and timeouts.
        task_status: ``nursery.start`` gets the list of ``trio.SocketListener`` once listening.

    Resource handling: listeners and every connection are closed when this is cancelled.

    Error handling: failing to bind raises ``OSError`` before ``started``. After that, nothing a
    client does (garbage, oversized frames, failed handshakes, a handler that raises) ends the
    server; it only ends that client's connection. A connection over ``max_connections`` or
    ``max_connections_per_ip`` is closed as soon as it is accepted.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    gate = _ConnectionGate(limits)

    async def on_accept(stream: trio.SocketStream) -> None:
        try:
            await _serve_accepted(stream, handler, ssl_context, limits, gate)
        except Exception:  # a bug here must not end serve_listeners
            log.exception("connection task failed")
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(on_accept, listeners, task_status=task_status)


async def _serve_accepted(stream: trio.SocketStream, handler: Handler,
                          ssl_context: ssl.SSLContext | None, limits: ServerLimits,
                          gate: _ConnectionGate) -> None:
    try:
        peer = _peer_address(stream)
    except OSError as exc:  # the client is already gone
        log.debug("accepted a connection that is already closed: %s", exc)
        await trio.aclose_forcefully(stream)
        return
    ip = peer[0]
    if not gate.admit(ip):
        log.info("refusing connection from %s: limit of %d connections (%d per IP) reached",
                 _fmt(peer), limits.max_connections, limits.max_connections_per_ip)
        await trio.aclose_forcefully(stream)
        return
    try:
        served: trio.abc.Stream = stream
        if ssl_context is not None:
            tls = TlsStream(stream, ssl_context, server_side=True)
            served = tls
            timeout = limits.tls_handshake_timeout_seconds
            with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                try:
                    await tls.do_handshake()
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    log.info("TLS handshake with %s failed: %s", _fmt(peer), exc.__cause__ or exc)
                    await trio.aclose_forcefully(tls)
                    return
            if scope.cancelled_caught:
                log.info("TLS handshake with %s timed out", _fmt(peer))
                await trio.aclose_forcefully(tls)
                return
        await serve_connection(served, handler, limits=limits, peer=peer)
    finally:
        gate.release(ip)


def listener_port(listeners: Sequence[trio.SocketListener]) -> int:
    """The TCP port the first listener is bound to (what port 0 turned into)."""
    return listeners[0].socket.getsockname()[1]


# ---------------------------------------------------------------------------------------- helpers


def _peer_address(stream: trio.abc.Stream) -> tuple[str, int]:
    inner = stream
    while isinstance(inner, (TlsStream, trio.SSLStream)):
        inner = inner.transport_stream
    sock = getattr(inner, "socket", None)
    if sock is None:
        return ("?", 0)
    name = sock.getpeername()
    if isinstance(name, tuple):
        return (name[0], name[1])
    return (str(name), 0)


def _fmt(peer: tuple[str, int]) -> str:
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_frame(head: bytes | bytearray | memoryview, total: int) -> None:
    if len(head) < 4:
        raise LocalProtocolError(f"a frame starts with a 4-byte size; got {len(head)} bytes")
    (size,) = _SIZE.unpack_from(head, 0)
    if size != total - 4:
        raise LocalProtocolError(f"frame size prefix says {size} bytes but {total - 4} follow")


async def _sendmsg_all(sock: trio.socket.SocketType, parts: list) -> None:
    """Write every byte of ``parts`` with as few ``sendmsg`` calls (writevs) as the socket
    takes: one, unless its buffer fills."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        try:
            sent = await sock.sendmsg(views[:IOV_MAX])
        except OSError as exc:
            raise trio.BrokenResourceError(f"sendmsg failed: {exc}") from exc
        views = unsent(views, sent)


def _changed(position: int, end: int) -> trio.BrokenResourceError:
    return trio.BrokenResourceError(
        f"sendfile: the file changed under the frame, {end - position} bytes short of it")


def _short_file(position: int, end: int) -> trio.BrokenResourceError:
    return trio.BrokenResourceError(
        f"sendfile: the file ended at byte {position}, {end - position} bytes short of the frame")
