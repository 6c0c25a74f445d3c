"""TLS for fluvial's connections: ``ssl.SSLContext`` builders, and the stream they run on.

Small on purpose: TLS 1.2 or later, certificates from files, optional mutual TLS. ``serve_tcp``
and ``open_connection`` take the contexts these return; ``ClusterTls`` builds them from the files
``fluvial cluster certs`` lays out. Who a certificate is and what it may do is ``fluvial.access``'s.

``TlsStream`` is what ``serve_tcp`` and ``open_connection`` wrap a TCP stream in: TLS over
``ssl.SSLObject`` and memory BIOs like ``trio.SSLStream``, tuned for a framed protocol that moves
large frames (see its docstring and docs/performance.md, "TLS").
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio

PathLike = str | os.PathLike[str]
T = TypeVar("T")

# One transport read feeds at least 16 full TLS records (more when the caller asks for more).
TRANSPORT_RECEIVE_BYTES = 256 * 1024
DEFAULT_RECEIVE_BYTES = 256 * 1024
# What serve_tcp and the client multiplexer ask a TlsStream for at a time (at least): each
# receive_some costs a scheduling point and a decoder feed, so fewer, larger ones.
TLS_RECEIVE_BYTES = 256 * 1024


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
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # TlsStream never reads to write (see there)
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
    ctx.options |= ssl.OP_NO_RENEGOTIATION
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


class TlsStream(trio.abc.Stream):
    """TLS over ``transport_stream`` (a ``trio.SocketStream``), full duplex: one task may receive
    while another sends. The same job as ``trio.SSLStream``, with the same ``ssl.SSLObject``
    underneath, done in fewer, larger steps, because fluvial's frames are large:

    * **Receiving** reads the transport ``TRANSPORT_RECEIVE_BYTES`` at a time, or what the
      caller asks for when that is more (trio.SSLStream: 64 KiB), and then decrypts every
      complete TLS record that is buffered, up to ``max_bytes``, straight into a new
      ``bytearray`` (``SSLObject.read`` into a buffer, no intermediate bytes), which the caller
      owns: nothing here touches it again.
      ``trio.SSLStream.receive_some`` returns one record (16 KiB at most) per call and passes
      through the scheduler each time, so a 1 MiB fetch response took 64 calls; here it takes 4.
    * **Sending** encrypts the whole buffer (records of 16 KiB) and writes what that produced
      with one ``send_all`` on the transport; bytes leave in the order they were encrypted.
      ``send_now`` does the same without a pause when nothing else is being sent: one
      non-blocking write on the socket, the rest (if the socket did not take it all) under the
      send lock, as the plain-TCP direct writes of the server and the client do.

    It must be handshaken (``do_handshake``) before use, as ``serve_tcp`` and ``open_connection``
    do; ``send_all`` and ``receive_some`` do it on first use otherwise. Renegotiation is refused
    (the contexts of this module set ``OP_NO_RENEGOTIATION``; TLS 1.3 has none), so a write
    never has to wait for a read; a peer that asks for it breaks the stream.

    EOF: a TLS ``close_notify`` reads as b""; a transport EOF without one, a TLS alert, or a
    record that does not verify raises ``trio.BrokenResourceError`` (as ``trio.SSLStream``'s
    default), and so does every later call. If a send is cancelled part-way the stream is broken.

    Attributes:
        transport_stream: the stream underneath.
    """

    def __init__(self, transport_stream: trio.abc.Stream, ssl_context: ssl.SSLContext, *,
                 server_side: bool = False, server_hostname: str | None = None,
                 transport_receive_bytes: int = TRANSPORT_RECEIVE_BYTES):
        self.transport_stream = transport_stream
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = ssl_context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                         server_hostname=server_hostname)
        self._transport_receive_bytes = transport_receive_bytes
        # Transport writes, in encryption order: FIFO, and without an owner (a semaphore, not a
        # lock), since the task that takes it in ``send_now`` may leave ``send_rest`` to another.
        self._send_lock = trio.Semaphore(1, max_value=1)
        self._receive_lock = trio.Lock()  # one transport read at a time
        self._receive_count = 0
        self._handshake_lock = trio.Lock()
        self._handshaken = False
        self._error: BaseException | None = None  # why the stream broke
        self._closed = False
        self._eof = False  # the transport ended; the SSL object has been told
        # the socket ``send_now`` writes to (a trio.SocketStream underneath), else -1
        self._fd = (transport_stream.socket.fileno()
                    if type(transport_stream) is trio.SocketStream else -1)

    # ------------------------------------------------------------------------------ TLS facts

    @property
    def server_side(self) -> bool:
        return self._ssl.server_side

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._ssl.getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        return self._ssl.cipher()

    def version(self) -> str | None:
        return self._ssl.version()

    # ------------------------------------------------------------------------------ plumbing

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._error is not None:
            raise trio.BrokenResourceError(f"the TLS stream is broken: {self._error!r}") \
                from self._error

    def _broken(self, exc: BaseException) -> trio.BrokenResourceError:
        if self._error is None:
            self._error = exc
        err = trio.BrokenResourceError(f"TLS failed: {exc!r}")
        err.__cause__ = exc
        return err

    async def _flush(self) -> None:
        """Send what the SSL object has produced. The bytes are taken out of the BIO before the
        lock is waited for, and the lock is FIFO, so they leave in the order they were made."""
        if not self._outgoing.pending:
            return
        data = self._outgoing.read()
        try:
            await _acquire(self._send_lock)
        except BaseException as exc:  # data is out of the BIO: nothing can follow it now
            if self._error is None:
                self._error = exc
            raise
        await self.send_rest(data)

    async def _fill(self, want: int = 0) -> None:
        """Feed the incoming BIO with one transport read (``want`` bytes or more), unless another
        task did meanwhile."""
        count = self._receive_count
        await _acquire(self._receive_lock)
        try:
            if count != self._receive_count:
                return
            data = await self.transport_stream.receive_some(max(want, self._transport_receive_bytes))
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
                self._eof = True
            self._receive_count += 1
        finally:
            self._receive_lock.release()

    async def _drive(self, operation: Callable[[], T], *, flush: bool = True) -> T:
        """Run an SSL object call until it no longer wants to read; then send what it produced
        (unless ``flush`` is false: the caller sends it with what follows)."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
                continue
            except (ssl.SSLError, ssl.CertificateError) as exc:
                await self._flush_quietly()  # e.g. the alert telling the peer why
                raise self._broken(exc) from exc
            if flush:
                await self._flush()
            return result

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    # ------------------------------------------------------------------------------ trio.abc.Stream

    async def do_handshake(self) -> None:
        """Run the TLS handshake (verifying the peer as the context says). Idempotent.

        Raises:
            trio.BrokenResourceError: the handshake failed (its cause says why).
        """
        self._check()
        if self._handshaken:
            await trio.lowlevel.checkpoint()
            return
        async with self._handshake_lock:
            if not self._handshaken:
                try:
                    await self._drive(self._ssl.do_handshake)
                except BaseException as exc:
                    if self._error is None:
                        self._error = exc
                    raise
                self._handshaken = True

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Up to ``max_bytes`` (default 256 KiB) decrypted bytes, in a new ``bytearray``: every
        complete record buffered, reading the transport only when none is. b"" after the peer's
        close_notify."""
        max_bytes = DEFAULT_RECEIVE_BYTES if max_bytes is None else max_bytes
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if not self._handshaken:
            await self.do_handshake()
        await trio.lowlevel.checkpoint_if_cancelled()
        yielded = False
        while True:
            self._check()
            if self._incoming.pending or self._ssl.pending() or self._eof:
                data = self._decrypt_buffered(max_bytes)
                if self._outgoing.pending:  # a post-handshake message wanted an answer
                    await self._flush()
                    yielded = True
                if data is not None:
                    if not yielded:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
            await self._fill(max_bytes)
            yielded = True

    def _decrypt_buffered(self, max_bytes: int) -> bytearray | None:
        """What the buffered records hold, up to ``max_bytes``; None if that is nothing yet."""
        ssl_object, incoming = self._ssl, self._incoming
        # The plaintext is never longer than the ciphertext it comes from.
        size = min(max_bytes, incoming.pending + ssl_object.pending()) or 1
        buf = bytearray(size)
        got = 0
        try:
            with memoryview(buf) as view:
                while got < size:
                    n = ssl_object.read(size - got, view[got:])
                    if not n:  # close_notify
                        break
                    got += n
                    if not incoming.pending and not ssl_object.pending():
                        break  # another read would only want more
        except ssl.SSLWantReadError:
            if not got:
                return None
        except ssl.SSLZeroReturnError:
            pass
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._broken(exc)
            if not got:
                raise trio.BrokenResourceError(f"TLS failed: {exc!r}") from exc
        if got < size:
            del buf[got:]
        return buf

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and write it to the transport in one ``send_all``."""
        await self.send_all_parts((data,))

    async def send_all_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """``send_all`` of each part in turn, without joining them, in one transport write
        (``ServerConnection.send_parts`` writes a frame's prefix and stored batches so)."""
        if not self._handshaken:
            await self.do_handshake()
        self._check()
        for part in parts:
            if part:  # SSLObject.write(b"") would mean something else
                await self._drive(functools.partial(self._ssl.write, part), flush=False)
        if self._outgoing.pending:
            await self._flush()
        else:
            await trio.lowlevel.checkpoint()

    def send_now(self, parts: Sequence[bytes | bytearray | memoryview]) -> memoryview | None:
        """Encrypt ``parts`` and write them to the socket at once, with no pause, when nothing
        else is being sent. Returns None when it did nothing (the stream is busy, not yet
        handshaken, broken, or not on a socket): the caller uses ``send_all_parts``. Otherwise
        the ciphertext the socket did not take, empty when it took everything; when it is not
        empty the send lock is held (taken right after the write, with no pause between, so
        nothing else can be sent first) and the caller must pass it to ``send_rest``."""
        if (self._fd < 0 or not self._send_lock.value or not self._handshaken or self._closed
                or self._error is not None or self._outgoing.pending):
            return None
        try:
            for part in parts:
                if part:  # SSLObject.write(b"") would mean something else
                    self._ssl.write(part)
        except (ssl.SSLError, ssl.CertificateError) as exc:  # no renegotiation: never WantRead
            self._broken(exc)
            return None  # send_all_parts raises why
        data = self._outgoing.read()
        try:
            sent = os.write(self._fd, data)
        except OSError:  # full (BlockingIOError), or broken: send_rest waits, or fails
            sent = 0
        rest = memoryview(data)[sent:]
        if rest:
            self._send_lock.acquire_nowait()  # free (checked above), and nothing awaited since
        return rest

    async def send_rest(self, rest: bytes | memoryview) -> None:
        """Send what ``send_now`` left (or ``_flush`` took out of the BIO) under the send lock the
        caller holds; releases the lock."""
        try:
            await self.transport_stream.send_all(rest)
        except BaseException as exc:  # part of a record may have gone: nothing can follow it
            if self._error is None:
                self._error = exc
            raise
        finally:
            self._send_lock.release()

    def drop_rest(self, why: str) -> None:
        """Give up what ``send_now`` left (the connection is ending): the stream is broken,
        the send lock released."""
        if self._error is None:
            self._error = trio.BrokenResourceError(why)
        self._send_lock.release()

    async def wait_send_all_might_not_block(self) -> None:
        self._check()
        async with self._send_lock:
            await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Send close_notify (without waiting for the peer's) if the stream is healthy, then
        close the transport. Idempotent."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self._handshaken and self._error is None:
                try:
                    self._ssl.unwrap()
                except (ssl.SSLWantReadError, ssl.SSLError):
                    pass
                await self._flush_quietly()
        finally:
            await self.transport_stream.aclose()


async def _acquire(lock: trio.Lock | trio.Semaphore) -> None:
    """``lock.acquire()`` without its scheduling point when the lock is free: the caller's next
    step (a transport read or write) is one."""
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()
