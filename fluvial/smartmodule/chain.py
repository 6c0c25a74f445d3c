"""A chain of SmartModules applied to stored batches: what a StreamFetch consumer gets back.

Synchronous; the SPU runs ``Chain.process`` in a worker thread. Each stored batch goes through the
modules in order (a module's output records are the next one's input, at the same base offset);
what comes out of the last keeps its records' source offsets. Fluvio's rules (``fluvio-spu/src/smartengine/batch.rs``):

* a module's own error (``SmartModuleOutput.error``) stops the chain at that batch; the records
  produced so far, that batch's partial output included, go out with error 6004;
* a failure (trap, fuel, bad output, memory) stops it the same way, with its own code;
* ``next_offset`` is the input offset after the last batch processed: the consumer's
  ``next_filter_offset``, so a filter that drops everything still moves the consumer on;
* output batches are framed as Fluvio frames them (``abi.frame_output``): they span the input
  they came from, so the official client's count of a non-continuous stream comes out right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fluvial.errors import Error, ErrorCode
from fluvial.protocol.batch import BatchError, iter_batches
from fluvial.protocol.codec import DecodeError, Reader
from fluvial.protocol.record import RECORD_COUNT, ProducerRecord, encode_batch, records_section
from fluvial.protocol import spu_api as api
from fluvial.smartmodule import abi
from fluvial.smartmodule.engine import Engine, Instance, SmartModuleFailure, chain_init


@dataclass
class ModuleSpec:
    """One invocation, resolved: the module's bytes (raw/gzipped wasm) and how to run it."""

    payload: bytes
    params: dict[str, str] = field(default_factory=dict)
    accumulator: bytes | None = None  # the initial accumulator of an aggregate
    lookback: api.Lookback | None = None  # the records its ``look_back`` gets when the stream opens


@dataclass
class ChainResult:
    """What a read came to: output batches covering ``[span_from, covered)`` (records, and
    spans of input that gave none), the input offset reached, how many records came out."""

    batches: list[bytes]
    covered: int
    next_offset: int
    count: int = 0
    error: Error | None = None

    def record_set(self) -> bytes:
        """The response's batches, with a span batch to ``next_offset`` so that the batches
        account for every input offset processed (see ``abi.frame_output``)."""
        tail = [abi.span_batch(self.covered, self.next_offset)] if self.covered < self.next_offset else []
        return b"".join(self.batches + tail)


def invocations(req: api.StreamFetchRequest) -> list[api.SmartModuleInvocation]:
    """The chain a StreamFetch asks for: ``smartmodules`` (v18+), else the legacy ``smartmodule``
    (v16-18), else the legacy ``wasm_module`` (v11-18, an AdHoc module run by its export)."""
    if req.smartmodules:
        return list(req.smartmodules)
    if req.smartmodule is not None:
        return [req.smartmodule]
    if req.wasm_module:
        return [api.SmartModuleInvocation(api.SmartModuleInvocationWasm.AdHoc(req.wasm_module),
                                          api.SmartModuleKind.Generic(api.SmartModuleContextData.None_()),
                                          api.SmartModuleExtraParams({}, None))]
    return []


def initial_accumulator(kind) -> bytes | None:
    """The aggregate's initial value an invocation's kind carries: ``Aggregate{accumulator}``
    or ``Generic(Aggregate{accumulator})``; None otherwise."""
    if isinstance(kind, api.SmartModuleKind.Aggregate):
        return kind.accumulator
    if isinstance(kind, api.SmartModuleKind.Generic) and \
            isinstance(kind.context, api.SmartModuleContextData.Aggregate):
        return kind.context.accumulator
    return None


def unsupported(kind) -> str | None:
    """Why fluvial cannot run an invocation of ``kind`` (joins), or None."""
    if isinstance(kind, (api.SmartModuleKind.Join, api.SmartModuleKind.JoinStream)) or (
            isinstance(kind, api.SmartModuleKind.Generic)
            and isinstance(kind.context, (api.SmartModuleContextData.Join,
                                          api.SmartModuleContextData.JoinStream))):
        return "join SmartModules are not supported"
    return None


class Chain:
    """Instantiated modules, in order; one per stream (the aggregate's state lives here)."""

    def __init__(self, engine: Engine, specs: list[ModuleSpec], version: int):
        if not specs:
            raise chain_init("an empty chain")
        self.instances: list[Instance] = [
            engine.instantiate(s.payload, s.params, version, s.accumulator) for s in specs]
        self.lookbacks: list[tuple[Instance, api.Lookback]] = [
            (inst, s.lookback) for inst, s in zip(self.instances, specs)
            if s.lookback is not None and inst.look_back_fn is not None]
        """The modules that export ``look_back`` and were given a lookback, in chain order."""

    def run(self, base_offset: int, records: bytes, base_timestamp: int) -> abi.TransformOutput:
        """One batch's records (i32 count + records) through every module; a module's error
        stops the chain there (its partial output is the result)."""
        out = None
        for inst in self.instances:
            out = inst.transform_batch(base_offset, records, base_timestamp)
            if out.error is not None:
                break
            records = out.raw
        return out

    def process(self, data: bytes, start: int, span_from: int | None = None) -> ChainResult:
        """Every whole batch of ``data`` (stored batches read from ``start``) through the chain.

        Each input batch that gives records becomes one output batch at its base offset with its
        span (the module's records as they came out, not re-encoded); input that gives none is
        covered by span batches. Records before ``start`` (in a first batch that begins before
        it) are dropped. ``span_from`` (<= ``start``): where the offsets this response accounts
        for begin, when earlier reads sent nothing.
        """
        covered = start if span_from is None else span_from
        result = ChainResult([], covered, start)
        try:
            for pos, h in iter_batches(data, verify_crc=False):
                sect, p, e, _ = records_section(data, pos, h)
                raw = bytes(sect[p - RECORD_COUNT.size:e])
                try:
                    out = self.run(h.base_offset, raw, h.first_timestamp)
                except SmartModuleFailure as f:
                    result.error = f.error
                    return result
                if out.count and h.base_offset < start:  # a first batch read from its middle
                    kept = [r for r in out.records if h.base_offset + r.offset_delta >= start]
                    if kept:
                        base = result.covered
                        section = abi.encode_out_records(
                            [r._replace(offset_delta=h.base_offset + r.offset_delta - base) for r in kept])
                        result.batches.append(abi.frame_output(
                            section, len(kept), base, h.next_offset - 1 - base, h.first_timestamp,
                            h.max_time_stamp))
                        result.covered = h.next_offset
                        result.count += len(kept)
                elif out.count:
                    if result.covered < h.base_offset:
                        result.batches.append(abi.span_batch(result.covered, h.base_offset))
                    result.batches.append(abi.frame_output(
                        out.raw, out.count, h.base_offset, h.last_offset_delta, h.first_timestamp,
                        h.max_time_stamp))
                    result.covered = h.next_offset
                    result.count += out.count
                result.next_offset = max(result.next_offset, h.next_offset)
                if out.error is not None:
                    result.error = Error(ErrorCode.SmartModuleRuntimeError, (out.error,))
                    return result
        except (BatchError, DecodeError) as e:
            result.error = Error.other(f"stored batch unreadable: {e}")
        return result

    def process_produce(self, data: bytes) -> tuple[bytes, Error | None]:
        """Produce-side: a produce entry's batches through the chain, as one batch to store
        (b"" when nothing came out). Any error refuses the whole entry (Fluvio's SPU does so).

        Raises:
            SmartModuleFailure: a module failed.
            DecodeError: the batches do not decode.
        """
        records: list[ProducerRecord] = []
        stamps: list[int] = []
        for pos, h in iter_batches(data):
            sect, p, e, _ = records_section(data, pos, h)
            out = self.run(h.base_offset, bytes(sect[p - RECORD_COUNT.size:e]), h.first_timestamp)
            if out.error is not None:
                return b"", Error(ErrorCode.SmartModuleRuntimeError, (out.error,))
            for r in out.records:
                records.append(ProducerRecord(r.value, r.key))
                stamps.append(h.first_timestamp + r.timestamp_delta if h.first_timestamp > 0 else -1)
        if not records:
            return b"", None
        first = stamps[0]
        deltas = [t - first if first > 0 and t > 0 else 0 for t in stamps]
        return encode_batch(records, first_timestamp=first, timestamp_deltas=deltas), None


def lookback_start(lookback: api.Lookback, log_start: int, hw: int) -> int:
    """Where a lookback's read begins: the last ``last`` records before the HW (Fluvio's
    ``lookback_last_iterator``), or the log's start when only an age is given.

    >>> lookback_start(api.Lookback(3, None), 0, 10), lookback_start(api.Lookback(30, None), 4, 10)
    (7, 4)
    """
    if lookback.last == 0 and lookback.age is not None:
        return log_start
    return min(max(hw - lookback.last, log_start), hw)


def lookback_records(data: bytes, start: int, min_timestamp: int | None = None) -> bytes:
    """The ``Vec<Record>`` a ``look_back`` gets: the records of stored batches ``data`` at
    offsets >= ``start`` (and, with ``min_timestamp``, stamped at or after it), as they are
    stored (their ``offset_delta`` relative to their own batch, as Fluvio passes them).

    Raises:
        DecodeError: a batch that does not decode.
    """
    kept: list[abi.OutRecord] = []
    for pos, h in iter_batches(data, verify_crc=False):
        sect, p, e, _ = records_section(data, pos, h)
        for i, r in enumerate(abi.decode_out_records(Reader(sect, p - RECORD_COUNT.size, e))):
            stamp = h.first_timestamp + r.timestamp_delta if h.first_timestamp > 0 else -1
            if h.base_offset + i >= start and (min_timestamp is None or stamp >= min_timestamp):
                kept.append(r)
    return abi.encode_out_records(kept)


__all__ = ["Chain", "ChainResult", "ModuleSpec", "initial_accumulator", "invocations", "lookback_records",
           "lookback_start", "unsupported"]
