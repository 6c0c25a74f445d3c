"""riff's gRPC invoker: a processor whose function runs behind a riff invoker
(``fluvial processor create NAME --invoker grpc://HOST:PORT ...``; docs/processors.md).

One ``Invoke`` call per window (riff-rpc.proto: ``fluvial.protocol.riff_rpc``): a StartFrame
(the output topics' content types, the input and output topics' names), then the window's
records as InputFrames, input by input (``argIndex`` = the input's index; ``contentType`` =
the record's ``content-type`` header, else its topic's content type, else
``application/octet-stream``), then a half-close: the window's end, the function's EOS. The
invoker's OutputFrames are the window's outputs, ``resultIndex`` naming the output topic,
until it ends the call. A call that does not end OK (the invoker unreachable, the function
failed, a status other than OK, a bad resultIndex, the deadline) fails the window, and the
runtime's retries, Failed state or dead-letter topic take it from there.

grpcio is an optional extra (``pip install 'fluvial[riff]'``). Its blocking API runs in a
worker thread (``trio.to_thread``), so the call never holds trio's loop; a cancelled window
cancels its call. The signals are encoded by hand (``fluvial.protocol.riff_rpc``): grpcio brings
no protobuf runtime, and four tiny messages do not justify one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio

from fluvial.client.types import Record
from fluvial.errors import FluvialError
from fluvial.processor.spec import invoker_target
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.content_type import CONTENT_TYPE_HEADER, header_content_type
from fluvial.protocol.riff_rpc import (
    INVOKE,
    InputFrame,
    OutputFrame,
    StartFrame,
    decode_output_signal,
    encode_input_signal,
)

DEFAULT_CONTENT_TYPE = "application/octet-stream"  # a topic without one holds bytes
CALL_TIMEOUT = 300.0  # seconds one window's call may take, all in all
MISSING_GRPC = "the riff invoker needs grpcio, an optional extra: pip install 'fluvial[riff]'"

Outputs = list[tuple[str, bytes | None, bytes, tuple]]

__all__ = ["DEFAULT_CONTENT_TYPE", "MISSING_GRPC", "InvokerError", "RiffFunction", "grpc_available",
           "window_outputs", "window_signals"]


class InvokerError(FluvialError):
    """The riff invoker failed a window's call (unreachable, a status other than OK, a
    resultIndex out of range); the window failed."""


def grpc_available() -> bool:
    try:
        import grpc  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------- a window <-> riff's frames


def window_signals(inputs: list[tuple[str, list[Record]]], outputs: list[str],
                   content_types: dict[str, str]) -> list[StartFrame | InputFrame]:
    """The signals of one window's call, before its half-close: the StartFrame, then every
    record of input ``i`` as an InputFrame with ``arg_index=i``, input after input.
    ``content_types``: each topic's ("" = none)."""
    start = StartFrame(tuple(content_types.get(t) or DEFAULT_CONTENT_TYPE for t in outputs),
                       tuple(t for t, _ in inputs), tuple(outputs))
    frames: list[StartFrame | InputFrame] = [start]
    for i, (topic, records) in enumerate(inputs):
        topic_type = content_types.get(topic) or DEFAULT_CONTENT_TYPE
        for r in records:
            headers = {k: v.decode("utf-8", "replace") for k, v in r.headers
                       if k.lower() != CONTENT_TYPE_HEADER}
            frames.append(InputFrame(r.value, header_content_type(r.headers) or topic_type, headers,
                                     arg_index=i))
    return frames


def window_outputs(frames: list[OutputFrame], outputs: list[str], content_types: dict[str, str]) -> Outputs:
    """The window's outputs ``(topic, key, value, headers)`` for the invoker's OutputFrames, in
    their order: ``result_index`` picks the output topic; a frame's content type other than its
    topic's becomes the record's ``content-type`` header (checked against it as any output).

    Raises:
        InvokerError: a resultIndex that names no output.
    """
    out: Outputs = []
    for n, f in enumerate(frames):
        if not 0 <= f.result_index < len(outputs):
            raise InvokerError(f"output frame {n} has resultIndex {f.result_index}, "
                               f"but the processor has {len(outputs)} output(s)")
        topic = outputs[f.result_index]
        headers = tuple((k, v.encode()) for k, v in f.headers.items() if k.lower() != CONTENT_TYPE_HEADER)
        if f.content_type and f.content_type != (content_types.get(topic) or DEFAULT_CONTENT_TYPE):
            headers += ((CONTENT_TYPE_HEADER, f.content_type.encode()),)
        out.append((topic, None, f.payload, headers))
    return out


# ------------------------------------------------------------------------------- the call


class RiffFunction:
    """The processor's function when it runs behind a riff invoker: ``await f(inputs,
    outputs)`` makes one Invoke call for the window and returns its outputs, as the runtime's
    ``invoke`` does for a Python function. ``content_type(topic)`` gives a topic's content type
    (``fl.admin.content_type``), asked once per topic. ``close()`` closes the channel.

    Raises (constructing it):
        ImportError: grpcio is not installed (the message names the extra).
        ValueError: ``url`` is not grpc://HOST:PORT.
    """

    def __init__(self, url: str, content_type: Callable[[str], Awaitable[str]], *,
                 timeout: float = CALL_TIMEOUT):
        target = invoker_target(url)
        try:
            import grpc
        except ImportError as e:
            raise ImportError(MISSING_GRPC) from e
        self.url = url
        self.timeout = timeout
        self._rpc_error = grpc.RpcError
        self._channel = grpc.insecure_channel(target)
        self._invoke = self._channel.stream_stream(INVOKE, request_serializer=encode_input_signal,
                                                   response_deserializer=self._decode)
        self._decode_error: DecodeError | None = None  # grpcio reports only "Exception deserializing"
        self._content_type = content_type
        self._types: dict[str, str] = {}

    def _decode(self, data: bytes) -> OutputFrame | None:
        try:
            return decode_output_signal(data)
        except DecodeError as e:
            self._decode_error = e
            raise

    async def _topic_types(self, topics: list[str]) -> dict[str, str]:
        for t in topics:
            if t not in self._types:
                self._types[t] = await self._content_type(t)
        return self._types

    async def __call__(self, inputs: list[tuple[str, list[Record]]], outputs: list[str]) -> Outputs:
        types = await self._topic_types([*(t for t, _ in inputs), *outputs])
        frames = await self.call(window_signals(inputs, outputs, types))
        return window_outputs(frames, outputs, types)

    async def call(self, signals: list[StartFrame | InputFrame]) -> list[OutputFrame]:
        """One Invoke call: sends ``signals``, half-closes, and returns the OutputFrames until
        the invoker ends the call.

        Raises:
            InvokerError: the call did not end OK.
        """

        def requests() -> Iterator[StartFrame | InputFrame]:
            yield from signals
            # returning half-closes the call: the window's end, the function's EOS

        self._decode_error = None
        call: Any = self._invoke(requests(), timeout=self.timeout)

        def drain() -> list[OutputFrame]:
            return [f for f in call if f is not None]  # None: a signal of a kind not known here

        try:
            return await trio.to_thread.run_sync(drain, abandon_on_cancel=True)
        except self._rpc_error as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            if self._decode_error is not None:
                details = f"{details} ({self._decode_error})"
            raise InvokerError(f"riff invoker {self.url}: {getattr(code, 'name', code)}: {details}") from None
        finally:
            call.cancel()  # a no-op once the call ended; else (cancelled, failed) it ends it

    def close(self) -> None:
        self._channel.close()
