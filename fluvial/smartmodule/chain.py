"""A chain of SmartModules applied to stored batches: what a StreamFetch consumer gets back.

Synchronous; the SPU runs ``Chain.process`` in a worker thread. Each stored batch goes through the
modules in order (a module's output records are the next one's input, at the same base offset);
what comes out of the last keeps its records' source offsets. Fluvio's rules (``fluvio-spu/src/smartengine/batch.rs``):

* a module's own error (``SmartModuleOutput.error``) stops the chain at that batch; the records
  produced so far, that batch's partial output included, go out with error 6004;
* a failure (trap, fuel, bad output, memory) stops it the same way, with its own code;
* ``next_offset`` is the input offset after the last batch processed: the consumer's
  ``next_filter_offset``, so a filter that drops everything still moves the consumer on;
* the output is one batch per response, framed as Fluvio frames it (``abi.output_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fluvial.errors import Error, ErrorCode
from fluvial.protocol.batch import BatchError, iter_batches
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.record import RECORD_COUNT, records_section
from fluvial.protocol import spu_api as api
from fluvial.smartmodule import abi
from fluvial.smartmodule.engine import Engine, Instance, SmartModuleFailure, chain_init


@dataclass
class ModuleSpec:
    """One invocation, resolved: the module's bytes (raw/gzipped wasm) and how to run it."""

    payload: bytes
    params: dict[str, str] = field(default_factory=dict)
    accumulator: bytes | None = None  # the initial accumulator of an aggregate


@dataclass
class ChainResult:
    records: list[abi.Produced]
    start: int  # the offset the read started at
    next_offset: int  # the input offset after the last batch processed
    error: Error | None = None

    def batch(self) -> bytes:
        """The response's record set: one batch in Fluvio's form (``abi.output_batch``) whose
        offset span is exactly ``[start, next_offset)``, so that successive responses tile the
        log and the official client's count of a non-continuous stream comes out right (Fluvio
        starts the span at the first batch with output, which can leave it short)."""
        if not self.records:
            return b""
        return abi.output_batch(self.records, self.start, self.next_offset)


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

    def run(self, base_offset: int, records: bytes, base_timestamp: int
            ) -> tuple[list[abi.OutRecord], Error | None]:
        """One batch's records (i32 count + records) through every module."""
        out: list[abi.OutRecord] = []
        for i, inst in enumerate(self.instances):
            if i:
                records = abi.encode_out_records(out)
            result = inst.transform_batch(base_offset, records, base_timestamp)
            out = result.records
            if result.error is not None:
                return out, Error(ErrorCode.SmartModuleRuntimeError, (result.error,))
        return out, None

    def process(self, data: bytes, start: int) -> ChainResult:
        """Every whole batch of ``data`` (stored batches read from ``start``) through the chain.

        Records before ``start`` (in the first batch) are left out of the output.
        """
        result = ChainResult([], start, start)
        try:
            for pos, h in iter_batches(data, verify_crc=False):
                sect, p, e, _ = records_section(data, pos, h)
                raw = bytes(sect[p - RECORD_COUNT.size:e])
                try:
                    records, error = self.run(h.base_offset, raw, h.first_timestamp)
                except SmartModuleFailure as f:
                    result.error = f.error
                    return result
                ts = h.first_timestamp
                kept = [abi.Produced(h.base_offset + r.offset_delta, ts + r.timestamp_delta if ts > 0 else -1,
                                     r.key, r.value)
                        for r in records if h.base_offset + r.offset_delta >= start]
                result.records += kept
                result.next_offset = max(result.next_offset, h.next_offset)
                if error is not None:
                    result.error = error
                    return result
        except (BatchError, DecodeError) as e:
            result.error = Error.other(f"stored batch unreadable: {e}")
        return result


__all__ = ["Chain", "ChainResult", "ModuleSpec", "initial_accumulator", "invocations", "unsupported"]
