"""SmartModules on the SPU's StreamFetch (docs/smartmodules.md): resolve a request's chain
(AdHoc bytes, or Predefined names asked of the SC with ``LookupSmartModule``), build it and run
it in worker threads, so a module that runs long never stalls the event loop or other streams.

One ``Engine`` per SPU context: compiled modules are cached by content hash and shared by every
stream; each stream gets its own instances (``fluvial.smartmodule.chain.Chain``).
"""

from __future__ import annotations

import logging
import time
import weakref

import trio

from fluvial.errors import Error, ErrorCode, FluvialError
from fluvial.net.errors import ConnectionLost, RequestTimeout
from fluvial.protocol import internal_api as ia
from fluvial.protocol import spu_api as api
from fluvial.protocol.codec import DecodeError
from fluvial.smartmodule.chain import (
    Chain, ChainResult, ModuleSpec, initial_accumulator, invocations, lookback_records,
    lookback_start, unsupported,
)
from fluvial.smartmodule.engine import Engine, Limits, SmartModuleFailure, chain_init

log = logging.getLogger("fluvial.spu")

LOOKUP_TIMEOUT = 10.0
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def engine_for(ctx) -> Engine:
    """The SPU's engine; limits from ``ctx.config.smartmodule_limits`` when it has one."""
    eng = _ENGINES.get(ctx)
    if eng is None:
        limits = getattr(ctx.config, "smartmodule_limits", None) or Limits()
        eng = _ENGINES[ctx] = Engine(limits)
    return eng


async def lookup_wasm(ctx, name: str) -> bytes:
    """The wasm of the SmartModule ``name``, from the SC.

    Raises:
        SmartModuleFailure: 6001 when the SC has no such module, 6005 when it cannot be asked.
    """
    cfg = ctx.config
    try:
        with trio.fail_after(LOOKUP_TIMEOUT):
            async with ctx.connect_member(cfg.sc_host, cfg.sc_port) as conn:
                await conn.handshake(timeout=LOOKUP_TIMEOUT)
                resp = await conn.call(ia.LookupSmartModuleRequest(ctx.spu_id, name),
                                       timeout=LOOKUP_TIMEOUT)
    except (OSError, ConnectionLost, RequestTimeout, DecodeError, FluvialError, trio.TooSlowError) as e:
        raise chain_init(f"cannot get SmartModule {name!r} from the SC: {e}") from None
    if not resp.error_code.ok:
        raise SmartModuleFailure(resp.error_code)
    return resp.payload


async def open_chain(ctx, req: api.StreamFetchRequest, version: int) -> Chain | None:
    """The chain a StreamFetch asks for, built and initialised; None when it asks for none.

    Raises:
        SmartModuleFailure: the error to send on the stream (6001, 6002, 6005, 6008).
    """
    invs = invocations(req)
    if not invs:
        return None
    chain = await build_chain(ctx, invs, version)
    replica = ctx.replicas.get((req.topic, req.partition))
    if chain.lookbacks and replica is not None:
        await run_lookbacks(chain, replica)
    return chain


MAX_LOOKBACK_BYTES = 64 << 20


def read_committed(replica, start: int) -> bytes:
    """The stored batches from ``start`` to the HW (at most ``MAX_LOOKBACK_BYTES``)."""
    parts, size, pos = [], 0, start
    while pos < replica.hw and size < MAX_LOOKBACK_BYTES:
        chunk = replica.storage.read(pos, 1 << 20, replica.hw)
        data = chunk.read_bytes()
        if not data or chunk.next_offset <= pos:
            break
        parts.append(data)
        size += len(data)
        pos = chunk.next_offset
    return b"".join(parts)


async def run_lookbacks(chain: Chain, replica) -> None:
    """Each ``look_back`` of the chain with the records its lookback selects (committed ones,
    as Fluvio's SPU reads them), in chain order, before the stream's first read.

    Raises:
        SmartModuleFailure: 6007, a ``look_back`` failed (or the records did not decode).
    """
    for inst, lookback in chain.lookbacks:
        start = lookback_start(lookback, replica.log_start_offset, replica.hw)
        min_ts = None if lookback.age is None else int((time.time() - lookback.age) * 1000)
        try:
            records = lookback_records(read_committed(replica, start), start, min_ts)
        except DecodeError as e:
            raise SmartModuleFailure(Error(ErrorCode.SmartModuleLookBackError, (str(e),))) from None
        await trio.to_thread.run_sync(inst.look_back, records, abandon_on_cancel=True)


async def build_chain(ctx, invs: list[api.SmartModuleInvocation], version: int) -> Chain:
    """``invs`` resolved (Predefined names asked of the SC), instantiated and initialised.

    Raises:
        SmartModuleFailure: as ``open_chain``.
    """
    specs = []
    for inv in invs:
        why = unsupported(inv.kind)
        if why is not None:
            raise chain_init(why)
        if isinstance(inv.wasm, api.SmartModuleInvocationWasm.Predefined):
            payload = await lookup_wasm(ctx, inv.wasm.name)
        else:
            payload = inv.wasm.module
        specs.append(ModuleSpec(payload, dict(inv.params.params), initial_accumulator(inv.kind),
                                inv.params.lookback))
    return await trio.to_thread.run_sync(Chain, engine_for(ctx), specs, version, abandon_on_cancel=True)


async def transform_produce(ctx, invs: list[api.SmartModuleInvocation], version: int,
                            records: bytes) -> tuple[bytes, Error | None]:
    """A produce entry's record set through a fresh chain (per entry, as Fluvio's SPU does):
    ``(batch to store or b"", error)``."""
    try:
        chain = await build_chain(ctx, invs, version)
        return await trio.to_thread.run_sync(chain.process_produce, records, abandon_on_cancel=True)
    except SmartModuleFailure as e:
        return b"", e.error
    except DecodeError as e:
        return b"", Error.other(f"rejected: {e}")


async def run_chain(chain: Chain, data: bytes, start: int, span_from: int) -> ChainResult:
    """``chain.process`` in a worker thread (the module runs without the GIL). A stream that is
    cancelled (its connection closed) does not wait for it: the thread ends when the module
    returns or runs out of fuel, and its chain is never used again."""
    return await trio.to_thread.run_sync(chain.process, data, start, span_from, abandon_on_cancel=True)


__all__ = ["build_chain", "engine_for", "lookup_wasm", "open_chain", "run_chain", "transform_produce"]
