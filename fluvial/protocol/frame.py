"""Framing: ``size:i32`` then ``size`` payload bytes (../shared/fluvio-protocol/README.md §4).

Theory of operation
-------------------
``FrameDecoder`` is fed whatever the transport delivered and hands back complete payloads. It
never trusts the size prefix: a negative size, or one above ``max_frame_bytes`` (default 64 MiB),
raises ``FrameTooLarge``/``DecodeError`` as soon as the 4 prefix bytes are in, before a single
payload byte is buffered or allocated. After an error the decoder is poisoned: the stream is out
of sync and the connection must be closed.

Large frames (a payload of at least ``collect_from`` bytes, 64 KiB by default: a fetch answer
of a megabyte arrives in many reads) are not grown in one buffer: the pieces are kept as they
came and joined once, when the last one is in (one copy of the payload instead of two), and
``wanted()`` says how many bytes the frame still needs, so that a reader can ask the transport
for all of them in one read. A piece is kept as it is when nothing can change it: a ``bytes``
read, or a buffer the reader hands over (``owned``: a TLS read is decrypted into a new buffer
every time); a piece of a buffer the reader may reuse is copied.
"""

from __future__ import annotations

import os
import struct

from fluvial.protocol.codec import DecodeError

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
COLLECT_FROM_BYTES = 64 * 1024  # payloads this large are collected in pieces (above)
MAX_READ_BYTES = 4 * 1024 * 1024  # the most ``read_size`` asks for at once
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024  # pieces per writev
_SIZE = struct.Struct(">i")


class FrameTooLarge(DecodeError):
    """The size prefix announces a frame larger than we accept."""


def frame(payload: bytes | bytearray) -> bytes:
    """Prefix ``payload`` with its i32 size."""
    return _SIZE.pack(len(payload)) + payload


def unsent(views: list[memoryview], sent: int) -> list[memoryview]:
    """What is left of a frame written in pieces (``views``: byte views, in order) once its
    first ``sent`` bytes are out: a writev that the socket took only part of.

    >>> [bytes(v) for v in unsent([memoryview(b"abc"), memoryview(b"de")], 4)]
    [b'e']
    """
    i = 0
    while i < len(views) and sent >= len(views[i]):
        sent -= len(views[i])
        i += 1
    if i == len(views):
        return []
    return [views[i][sent:], *views[i + 1:]]


class FrameDecoder:
    """Incremental splitter: ``feed(data)`` returns the complete payloads it now holds."""

    __slots__ = ("max_frame_bytes", "collect_from", "_buf", "_need", "_parts", "_have", "_failed")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 collect_from: int = COLLECT_FROM_BYTES):
        self.max_frame_bytes = max_frame_bytes
        self.collect_from = collect_from
        self._buf = bytearray()
        self._need = -1  # payload size of the frame being read, -1 while reading the prefix
        self._parts: list | None = None  # a large payload's pieces so far (``_buf`` is empty)
        self._have = 0  # their bytes
        self._failed: DecodeError | None = None

    def feed(self, data: bytes | bytearray | memoryview, owned: bool = False) -> list[bytes]:
        """The payloads completed by ``data``. ``owned``: the caller will never change ``data``
        again (it hands the buffer over), so its pieces may be kept without a copy."""
        if self._failed:
            raise self._failed
        out: list[bytes] = []
        stable = owned or type(data) is bytes  # slices of it may be kept: nothing can change it
        view = memoryview(data)
        if self._parts is not None:
            missing = self._need - self._have
            if len(view) < missing:
                self._parts.append(view if stable else bytes(view))
                self._have += len(view)
                return out
            self._parts.append(view[:missing])
            out.append(b"".join(self._parts))
            self._parts, self._have, self._need = None, 0, -1
            view = view[missing:]
        if not self._buf:
            # Fast path: nothing buffered, so whole frames are cut straight out of ``data`` (one
            # copy each) and only a trailing partial frame is kept.
            got, pos = self._split(view)
            out += got
            if pos < len(view):
                self._keep(view[pos:], stable)
            return out
        self._buf += view
        with memoryview(self._buf) as buffered:
            got, pos = self._split(buffered)
            out += got
            if self._need >= self.collect_from and pos < len(buffered):
                self._keep(buffered[pos:], stable=False)  # a large frame: collected from here
                pos = len(buffered)
        if pos:
            del self._buf[:pos]
        return out

    def _keep(self, tail: memoryview, stable: bool) -> None:
        """Hold the start of a frame that ``feed`` could not finish."""
        if self._need >= self.collect_from:
            self._parts, self._have = [tail if stable else bytes(tail)], len(tail)
        else:
            self._buf += tail

    def wanted(self) -> int:
        """The bytes a large frame still needs (0 when none is being collected)."""
        return self._need - self._have if self._parts is not None else 0

    def read_size(self, least: int) -> int:
        """What a reader should ask the transport for next: ``least``, or what a large frame
        still needs when that is more (up to ``MAX_READ_BYTES``)."""
        return max(least, min(self.wanted(), MAX_READ_BYTES))

    def _split(self, view: memoryview) -> tuple[list[bytes], int]:
        out: list[bytes] = []
        pos, n = 0, len(view)
        while True:
            if self._need < 0:
                if n - pos < 4:
                    break
                (size,) = _SIZE.unpack_from(view, pos)
                if size < 0:
                    self._failed = DecodeError(f"frame: negative size {size}")
                    raise self._failed
                if size > self.max_frame_bytes:
                    self._failed = FrameTooLarge(
                        f"frame: size {size} exceeds the limit of {self.max_frame_bytes} bytes")
                    raise self._failed
                pos += 4
                self._need = size
            if n - pos < self._need:
                break
            out.append(bytes(view[pos : pos + self._need]))
            pos += self._need
            self._need = -1
        return out, pos

    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf) + self._have
