"""SmartModules on the client side: what ``fl.consumer(topic, smartmodules=[...])`` sends, and
the SmartModule objects of ``fl.admin`` (create, list, delete).

A chain entry is a ``SmartModule``, or a ``str`` (the name of a module created on the cluster), or
a ``pathlib.Path`` (a ``.wasm`` file sent with the request). On the wire (StreamFetch v18+) each
is a ``SmartModuleInvocation``: ``Predefined(name)`` or ``AdHoc(gzipped wasm)``, kind
``Generic`` (the SPU picks the transform by the module's exports) with the aggregate's initial
value when one is given, and the params.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluvial.client.types import Record
from fluvial.protocol import spu_api as api
from fluvial.protocol.sc_objects import SmartModuleSpec, SmartModuleWasm, SmartModuleWasmFormat
from fluvial.protocol.batch import ATTR_SCHEMA_ID, HEADER_BYTES, read_header
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.record import RECORD_COUNT, SCHEMA_ID_BYTES
from fluvial.protocol.record_fast import decode_fetched_batches
from fluvial.smartmodule.abi import decode_output_batches


@dataclass(frozen=True)
class SmartModule:
    """One module of a consumer's chain: exactly one of ``name`` (created on the cluster),
    ``path`` (a wasm file) or ``wasm`` (its bytes, raw or gzipped).

    Args:
        params: passed to the module's ``init``.
        aggregate_initial: the accumulator an ``aggregate`` module starts from.
        lookback_last, lookback_age: a module that exports ``look_back`` gets, when the stream
            opens, the last ``lookback_last`` records and/or those of the last
            ``lookback_age`` seconds.
    """

    name: str | None = None
    path: str | Path | None = None
    wasm: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    aggregate_initial: bytes | str | None = None
    lookback_last: int | None = None
    lookback_age: float | None = None

    def __post_init__(self):
        if sum(x is not None for x in (self.name, self.path, self.wasm)) != 1:
            raise ValueError("a SmartModule needs exactly one of name, path or wasm")

    def invocation(self) -> api.SmartModuleInvocation:
        """The StreamFetch invocation (reads ``path`` now).

        Raises:
            OSError: the file cannot be read.
        """
        if self.name is not None:
            wasm: Any = api.SmartModuleInvocationWasm.Predefined(self.name)
        else:
            data = Path(self.path).read_bytes() if self.path is not None else bytes(self.wasm)
            if data[:2] != b"\x1f\x8b":
                data = gzip.compress(data)
            wasm = api.SmartModuleInvocationWasm.AdHoc(data)
        acc = self.aggregate_initial
        context: Any = api.SmartModuleContextData.None_()
        if acc is not None:
            context = api.SmartModuleContextData.Aggregate(acc.encode() if isinstance(acc, str) else bytes(acc))
        lookback = None
        if self.lookback_last is not None or self.lookback_age is not None:
            lookback = api.Lookback(int(self.lookback_last or 0), self.lookback_age)
        return api.SmartModuleInvocation(
            wasm, api.SmartModuleKind.Generic(context),
            api.SmartModuleExtraParams({str(k): str(v) for k, v in self.params.items()}, lookback))


def as_smartmodule(item: SmartModule | str | Path) -> SmartModule:
    if isinstance(item, SmartModule):
        return item
    if isinstance(item, Path):
        return SmartModule(path=item)
    if isinstance(item, str):
        return SmartModule(name=item)
    raise TypeError(f"a smartmodule is a SmartModule, a name or a Path, not {item!r}")


def invocations(items) -> list[api.SmartModuleInvocation]:
    """The StreamFetch ``smartmodules`` of a consumer's ``smartmodules=`` argument."""
    return [as_smartmodule(i).invocation() for i in items or ()]


def decode_smartmodule_chunk(buf, pos: int, end: int, partition: int, min_offset: int,
                             limit: int | None) -> list[Record]:
    """The records of a SmartModule stream's record set, from ``min_offset`` up to ``limit``.

    A batch whose records fill its span (a map's output: as many records as offsets) is read by
    the fast decoder, each record at ``base_offset + index`` (as the official client reads every
    batch); a batch with fewer records than its span (a filter's output, a span with none) puts
    each at ``base_offset + offset_delta``, its source offset.

    Raises:
        DecodeError: a batch that does not decode.
    """
    out: list[Record] = []
    hi = (1 << 63) if limit is None else limit
    dense_from = None
    p = pos
    while p < end:
        h = read_header(buf, p)
        size = h.size
        section = p + HEADER_BYTES + (SCHEMA_ID_BYTES if h.attributes & ATTR_SCHEMA_ID else 0)
        dense = h.compression != 0 or (
            end - section >= 4 and RECORD_COUNT.unpack_from(buf, section)[0] == h.last_offset_delta + 1)
        if dense:
            if dense_from is None:
                dense_from = p
        else:
            if dense_from is not None:
                out += _dense(buf, dense_from, p, partition, min_offset, limit)
                dense_from = None
            out += [r for r in decode_output_batches(
                buf, p, min(p + size, end), lambda t: Record((partition, t[0], t[2], t[3], t[1])))
                if min_offset <= r[1] < hi]
        p += size
    if dense_from is not None:
        out += _dense(buf, dense_from, end, partition, min_offset, limit)
    return out


def _dense(buf, pos: int, end: int, partition: int, min_offset: int, limit: int | None) -> list[Record]:
    out: list[Record] = []
    while pos < end:
        records, new_pos, _ = decode_fetched_batches(buf, pos, end, partition, min_offset, limit, row=Record)
        out += records
        if new_pos == pos:
            raise DecodeError(f"batch at {pos}: cut off at {end}")
        pos = new_pos
    return out


def smartmodule_spec(wasm: bytes) -> SmartModuleSpec:
    """The SC object of a module created from ``wasm`` (raw or gzipped; stored as given)."""
    return SmartModuleSpec(None, None, SmartModuleWasm(SmartModuleWasmFormat.Binary, bytes(wasm)))


@dataclass(frozen=True)
class SmartModuleInfo:
    name: str
    size: int  # bytes of the stored wasm (as created: raw or gzipped)


__all__ = ["SmartModule", "SmartModuleInfo", "as_smartmodule", "decode_smartmodule_chunk", "invocations",
           "smartmodule_spec"]
