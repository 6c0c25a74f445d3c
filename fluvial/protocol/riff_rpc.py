"""riff's streaming RPC messages (``riff-rpc.proto``, package ``streaming``), encoded and decoded
by hand: the four messages are tiny, and grpcio does not bring a protobuf runtime with it, so
fluvial needs neither generated code nor the ``protobuf`` package (pure: no I/O).

    service Riff { rpc Invoke (stream InputSignal) returns (stream OutputSignal) {} }

    InputSignal  => oneof frame { StartFrame start = 1; InputFrame data = 2; }
    StartFrame   => repeated string expectedContentTypes = 1;  // one per output
                    repeated string inputNames = 2;
                    repeated string outputNames = 3;
    InputFrame   => bytes payload = 1;  string contentType = 2;
                    map<string, string> headers = 3;             // entries: key = 1, value = 2
                    int32 argIndex = 4;                          // which input
    OutputSignal => oneof frame { OutputFrame data = 1; }
    OutputFrame  => bytes payload = 1;  string contentType = 2;
                    map<string, string> headers = 3;
                    int32 resultIndex = 4;                       // which output

Protobuf's wire format: every field is a varint key ``field_number << 3 | wire_type`` and a
value; wire type 0 is a varint (LEB128, unsigned; a negative int32 is sign-extended to 10
bytes), 2 is length-delimited (a varint length, then the bytes: strings, bytes, nested messages,
map entries). proto3 leaves out fields at their default ("", b"", 0), except a oneof's message,
which is always written (an empty StartFrame is ``0a 00``). A decoder skips fields it does not
know (wire types 0, 1, 2 and 5), and the last of a repeated scalar wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from fluvial.protocol.codec import DecodeError, encode_varint
from fluvial.protocol.record import read_uvarint

SERVICE = "streaming.Riff"
INVOKE = f"/{SERVICE}/Invoke"  # the gRPC method path

VARINT, I64, LEN, I32 = 0, 1, 2, 5  # protobuf wire types (3 and 4, groups, are long deprecated)
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class StartFrame:
    """The first signal of an invocation: what each output may carry, and the names of the
    function's inputs and outputs (fluvial sends the topics' names)."""

    expected_content_types: tuple[str, ...] = ()
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputFrame:
    """One input record for the function's input ``arg_index``."""

    payload: bytes = b""
    content_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    arg_index: int = 0


@dataclass(frozen=True)
class OutputFrame:
    """One output record of the function, for its output ``result_index``."""

    payload: bytes = b""
    content_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    result_index: int = 0


# ------------------------------------------------------------------------------- encoding


def _uvarint(n: int) -> bytes:
    """Unsigned LEB128 (protobuf's varint, no ZigZag); a negative int32 as its 64-bit two's
    complement (10 bytes), as protobuf does. The LEB128 writer is the record codec's, which
    ZigZags first: it is handed the value whose ZigZag is ``n``."""
    n &= _U64
    return encode_varint((n >> 1) ^ -(n & 1))


def _len_field(number: int, data: bytes) -> bytes:
    return _uvarint(number << 3 | LEN) + _uvarint(len(data)) + data


def _str_field(number: int, s: str) -> bytes:
    return _len_field(number, s.encode()) if s else b""


def _bytes_field(number: int, b: bytes) -> bytes:
    return _len_field(number, bytes(b)) if b else b""


def _int32_field(number: int, n: int) -> bytes:
    if not -(1 << 31) <= n < (1 << 31):
        raise ValueError(f"field {number}: {n} is not an int32")
    return _uvarint(number << 3 | VARINT) + _uvarint(n) if n else b""


def _map_field(number: int, headers: dict[str, str]) -> bytes:
    return b"".join(_len_field(number, _str_field(1, k) + _str_field(2, v)) for k, v in headers.items())


def _frame(payload: bytes, content_type: str, headers: dict[str, str], index: int) -> bytes:
    """InputFrame and OutputFrame have the same four fields."""
    return (_bytes_field(1, payload) + _str_field(2, content_type) + _map_field(3, headers)
            + _int32_field(4, index))


def encode_input_signal(frame: StartFrame | InputFrame) -> bytes:
    """An ``InputSignal`` holding ``frame`` (the client's message)."""
    if isinstance(frame, StartFrame):
        body = (b"".join(_str_field(1, s) or _len_field(1, b"") for s in frame.expected_content_types)
                + b"".join(_str_field(2, s) or _len_field(2, b"") for s in frame.input_names)
                + b"".join(_str_field(3, s) or _len_field(3, b"") for s in frame.output_names))
        return _len_field(1, body)
    return _len_field(2, _frame(frame.payload, frame.content_type, frame.headers, frame.arg_index))


def encode_output_signal(frame: OutputFrame) -> bytes:
    """An ``OutputSignal`` holding ``frame`` (the invoker's message)."""
    return _len_field(1, _frame(frame.payload, frame.content_type, frame.headers, frame.result_index))


# ------------------------------------------------------------------------------- decoding


def _fields(data: bytes, what: str) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field: an int for a varint or a fixed
    field, bytes for a length-delimited one.

    Raises:
        DecodeError: truncated, a bad wire type, a field number 0.
    """
    p, end = 0, len(data)
    try:
        while p < end:
            key, p = read_uvarint(data, p)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise DecodeError(f"{what}: field number 0 at offset {p}")
            if wire == VARINT:
                value, p = read_uvarint(data, p)
            elif wire == LEN:
                n, p = read_uvarint(data, p)
                if n > end - p:
                    raise DecodeError(f"{what}: field {number} claims {n} bytes, {end - p} left")
                value, p = bytes(data[p:p + n]), p + n
            elif wire in (I64, I32):
                size = 8 if wire == I64 else 4
                if size > end - p:
                    raise DecodeError(f"{what}: field {number} truncated")
                value, p = int.from_bytes(data[p:p + size], "little"), p + size
            else:
                raise DecodeError(f"{what}: field {number} has wire type {wire} (unsupported)")
            yield number, wire, value
    except IndexError:
        raise DecodeError(f"{what}: truncated varint") from None


def _expect(number: int, wire: int, want: int, what: str) -> None:
    if wire != want:
        raise DecodeError(f"{what}: field {number} has wire type {wire}, expected {want}")


def _text(b: bytes, what: str) -> str:
    try:
        return b.decode()
    except UnicodeDecodeError as e:
        raise DecodeError(f"{what}: a string that is not UTF-8 ({e})") from None


def _decode_frame(data: bytes, what: str) -> tuple[bytes, str, dict[str, str], int]:
    payload, content_type, headers, index = b"", "", {}, 0
    for number, wire, value in _fields(data, what):
        if number in (1, 2, 3):
            _expect(number, wire, LEN, what)
        if number == 1:
            payload = value
        elif number == 2:
            content_type = _text(value, what)
        elif number == 3:
            k = v = ""
            for n, w, x in _fields(value, f"{what} header"):
                if n in (1, 2):
                    _expect(n, w, LEN, f"{what} header")
                    if n == 1:
                        k = _text(x, what)
                    else:
                        v = _text(x, what)
            headers[k] = v
        elif number == 4:
            _expect(number, wire, VARINT, what)
            index = value & 0xFFFFFFFF  # int32: the low 32 bits, two's complement
            index -= (index >> 31) << 32
    return payload, content_type, headers, index


def decode_input_signal(data: bytes) -> StartFrame | InputFrame:
    """Raises DecodeError: malformed, or a signal with no frame."""
    frame: StartFrame | InputFrame | None = None
    for number, wire, value in _fields(data, "InputSignal"):
        if number == 1:
            _expect(number, wire, LEN, "InputSignal")
            lists: dict[int, list[str]] = {1: [], 2: [], 3: []}
            for n, w, x in _fields(value, "StartFrame"):
                if n in lists:
                    _expect(n, w, LEN, "StartFrame")
                    lists[n].append(_text(x, "StartFrame"))
            frame = StartFrame(tuple(lists[1]), tuple(lists[2]), tuple(lists[3]))
        elif number == 2:
            _expect(number, wire, LEN, "InputSignal")
            frame = InputFrame(*_decode_frame(value, "InputFrame"))
    if frame is None:
        raise DecodeError("InputSignal: neither a start nor a data frame")
    return frame


def decode_output_signal(data: bytes) -> OutputFrame | None:
    """The signal's frame; None for a signal without one (a kind this end does not know yet:
    the oneof exists "to allow for future extensions").

    Raises DecodeError: malformed."""
    frame = None
    for number, wire, value in _fields(data, "OutputSignal"):
        if number == 1:
            _expect(number, wire, LEN, "OutputSignal")
            frame = OutputFrame(*_decode_frame(value, "OutputFrame"))
    return frame


__all__ = ["INVOKE", "SERVICE", "InputFrame", "OutputFrame", "StartFrame", "decode_input_signal",
           "decode_output_signal", "encode_input_signal", "encode_output_signal"]
