"""Framing: ``size:i32`` then ``size`` payload bytes (../shared/fluvio-protocol/README.md §4).

Theory of operation
-------------------
``FrameDecoder`` is fed whatever the transport delivered and hands back complete payloads. It
never trusts the size prefix: a negative size, or one above ``max_frame_bytes`` (default 64 MiB),
raises ``FrameTooLarge``/``DecodeError`` as soon as the 4 prefix bytes are in, before a single
payload byte is buffered or allocated. After an error the decoder is poisoned: the stream is out
of sync and the connection must be closed.
"""

from __future__ import annotations

import struct

from fluvial.protocol.codec import DecodeError

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
_SIZE = struct.Struct(">i")


class FrameTooLarge(DecodeError):
    """The size prefix announces a frame larger than we accept."""


def frame(payload: bytes | bytearray) -> bytes:
    """Prefix ``payload`` with its i32 size."""
    return _SIZE.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental splitter: ``feed(data)`` returns the complete payloads it now holds."""

    __slots__ = ("max_frame_bytes", "_buf", "_need", "_failed")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._need = -1  # payload size of the frame being read, -1 while reading the prefix
        self._failed: DecodeError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._failed:
            raise self._failed
        if not self._buf:
            # Fast path: nothing buffered, so whole frames are cut straight out of ``data`` (one
            # copy each) and only a trailing partial frame is kept.
            view = memoryview(data)
            out, pos = self._split(view)
            if pos < len(view):
                self._buf += view[pos:]
            return out
        self._buf += data
        with memoryview(self._buf) as view:
            out, pos = self._split(view)
        if pos:
            del self._buf[:pos]
        return out

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
        return len(self._buf)
