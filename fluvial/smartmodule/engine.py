"""Run SmartModules with wasmtime: compile once per content hash, instantiate per stream, bounded.

Synchronous (no trio): the SPU calls ``Chain.process`` from a worker thread, so a module that runs
long blocks only that thread (wasmtime releases the GIL while wasm runs).

Resource handling
-----------------
* Memory: each instance's store is capped at ``Limits.memory_bytes``; ``memory.grow`` past it
  returns -1 (a Rust module then aborts), and a failure with memory at the cap is reported as
  ``SmartModuleMemoryLimitExceeded`` (6008).
* Time: fuel. Every call into a module (``init``, each transform, ``alloc``) gets
  ``Limits.fuel`` units (about one per wasm instruction); running out traps, reported as a
  runtime error (6004). An infinite loop therefore fails its stream and nothing else.
* Modules: ``Engine`` keeps compiled modules by SHA-256 of the wasm bytes (LRU, ``cache_size``).

Error handling
--------------
Everything a module can do wrong ends as ``SmartModuleFailure(error)`` carrying the wire ``Error``
to send to the consumer: 6002 invalid module, 6005 chain init (missing exports, init failed,
instantiation failed), 6004 runtime (trap, fuel, negative status, garbage output, or the module's
own error), 6008 memory limit.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import wasmtime

from fluvial.errors import Error, ErrorCode
from fluvial.protocol.codec import DecodeError, SmartModuleTransformRuntimeError
from fluvial.smartmodule import abi

TRANSFORMS = ("filter", "map", "filter_map", "array_map", "aggregate")
"""Export names, in the order a module's transform is looked for (Fluvio's)."""

KIND_TAG = {"filter": 0, "map": 1, "array_map": 2, "aggregate": 3, "filter_map": 4}
"""The error-payload SmartModuleKind tag of each transform."""

PAGE = 65536


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 64 << 20
    fuel: int = 200_000_000


class SmartModuleFailure(Exception):
    """A SmartModule failed; ``error`` is what the consumer is told."""

    def __init__(self, error: Error):
        super().__init__(error.message)
        self.error = error


def invalid(reason: str) -> SmartModuleFailure:
    return SmartModuleFailure(Error(ErrorCode.SmartModuleInvalid, (reason, None)))


def chain_init(reason: str) -> SmartModuleFailure:
    return SmartModuleFailure(Error(ErrorCode.SmartModuleChainInitError, (reason,)))


def runtime(hint: str, offset: int, kind: str, key: bytes | None = None,
            value: bytes = b"") -> SmartModuleFailure:
    return SmartModuleFailure(Error(ErrorCode.SmartModuleRuntimeError, (
        SmartModuleTransformRuntimeError(hint, offset, KIND_TAG.get(kind, 0), key, value),)))


class Engine:
    """A wasmtime engine with fuel metering and a cache of compiled modules."""

    def __init__(self, limits: Limits | None = None, cache_size: int = 64):
        self.limits = limits or Limits()
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        self.engine = wasmtime.Engine(cfg)
        self._cache: OrderedDict[str, wasmtime.Module] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.compiles = 0  # how many modules were compiled (the cache's misses)

    def module(self, payload: bytes) -> wasmtime.Module:
        """The compiled module of ``payload`` (raw or gzipped wasm, or WAT), from the cache when
        the same bytes were compiled before.

        Raises:
            SmartModuleFailure: 6002, not a valid module.
        """
        try:
            wasm = abi.wasm_bytes(payload)
        except abi.ModuleError as e:
            raise invalid(str(e)) from None
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            m = self._cache.get(digest)
            if m is not None:
                self._cache.move_to_end(digest)
                return m
        try:
            m = wasmtime.Module(self.engine, wasm)
        except (wasmtime.WasmtimeError, ValueError, TypeError) as e:
            raise invalid(f"does not compile: {str(e).splitlines()[0] if str(e) else e}") from None
        with self._lock:
            self.compiles += 1
            self._cache[digest] = m
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return m

    def instantiate(self, payload: bytes, params: dict[str, str] | None = None, version: int = 24,
                    accumulator: bytes | None = None) -> Instance:
        return Instance(self, self.module(payload), params or {}, version, accumulator)


@dataclass
class Instance:
    """One module instantiated in its own capped store, with its transform found and ``init``
    run. Not thread-safe: one stream uses it at a time."""

    engine: Engine
    module: wasmtime.Module
    params: dict[str, str]
    version: int
    accumulator: bytes | None = None
    kind: str = ""
    _out: bytes | None = field(default=None, repr=False)

    def __post_init__(self):
        limits = self.engine.limits
        self.store = wasmtime.Store(self.engine.engine)
        self.store.set_limits(memory_size=limits.memory_bytes)
        self.store.set_wasi(wasmtime.WasiConfig())
        linker = wasmtime.Linker(self.engine.engine)
        linker.allow_shadowing = True
        try:
            linker.define_wasi()
            copy = next((i for i in self.module.imports if i.name == "copy_records"), None)
            if copy is None:
                raise chain_init("the module does not import copy_records")
            ty = wasmtime.FuncType([wasmtime.ValType.i32(), wasmtime.ValType.i32()], [])
            linker.define_func(copy.module, "copy_records", ty, self._copy_records, access_caller=True)
            self._fuel()
            self.instance = linker.instantiate(self.store, self.module)
        except SmartModuleFailure:
            raise
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise self._failure_or(chain_init(f"instantiation failed: {_first_line(e)}")) from None
        exports = self.instance.exports(self.store)
        self.memory = exports.get("memory") if "memory" in exports else None
        self.alloc = exports.get("alloc") if "alloc" in exports else None
        if not isinstance(self.memory, wasmtime.Memory) or not isinstance(self.alloc, wasmtime.Func):
            raise chain_init("the module must export memory and alloc")
        self.kind = next((n for n in TRANSFORMS if n in exports
                          and isinstance(exports.get(n), wasmtime.Func)), "")
        if not self.kind:
            raise chain_init(f"the module exports none of {', '.join(TRANSFORMS)}")
        self.transform = exports.get(self.kind)
        if self.kind == "aggregate" and self.accumulator is None:
            self.accumulator = b""
        if self.kind != "aggregate":
            self.accumulator = None
        look_back = exports.get("look_back") if "look_back" in exports else None
        self.look_back_fn = look_back if isinstance(look_back, wasmtime.Func) else None
        init = exports.get("init") if "init" in exports else None
        if isinstance(init, wasmtime.Func):
            self._init(init)

    # -- host side of the ABI -----------------------------------------------------------------

    def _copy_records(self, caller, ptr: int, length: int) -> None:
        mem = caller["memory"]
        if not isinstance(mem, wasmtime.Memory) or ptr < 0 or length < 0 or \
                ptr + length > mem.data_len(caller):
            raise wasmtime.Trap("copy_records: out of bounds")
        self._out = bytes(mem.read(caller, ptr, ptr + length))

    def _fuel(self) -> None:
        self.store.set_fuel(self.engine.limits.fuel)

    def _write(self, data: bytes) -> int:
        self._fuel()
        ptr = self.alloc(self.store, len(data))
        if not isinstance(ptr, int) or ptr < 0 or ptr + len(data) > self.memory.data_len(self.store):
            raise wasmtime.Trap(f"alloc returned {ptr!r} for {len(data)} bytes")
        self.memory.write(self.store, data, ptr)
        return ptr

    def _call(self, func: wasmtime.Func, data: bytes) -> int:
        """Write ``data`` with alloc, call ``func(ptr, len, version)`` with fresh fuel."""
        self._out = None
        ptr = self._write(data)
        self._fuel()
        status = func(self.store, ptr, len(data), self.version)
        if not isinstance(status, int):
            raise wasmtime.Trap(f"the function returned {status!r}, not an i32")
        return status

    def _failure_or(self, other: SmartModuleFailure) -> SmartModuleFailure:
        """6008 when the memory is within a page (or 10%) of its cap, else ``other``.

        wasmtime's Python API cannot tell us that a ``memory.grow`` was refused (the grow just
        returns -1 and the module aborts), so a failure with memory at the cap is taken as that.
        """
        limit = self.engine.limits.memory_bytes
        mem = getattr(self, "memory", None)
        size = mem.data_len(self.store) if isinstance(mem, wasmtime.Memory) else 0
        if size + max(PAGE, limit // 10) > limit:
            return SmartModuleFailure(Error(ErrorCode.SmartModuleMemoryLimitExceeded,
                                            (size + PAGE, limit)))
        return other

    def _call_checked(self, func: wasmtime.Func, data: bytes, what: str, failed, names: dict,
                      error_status: int, decode_hint) -> None:
        """Call ``init`` or ``look_back``: a trap, or a negative status, raises
        ``failed(hint)``; with ``error_status`` the hint is the module's own message (its output,
        read with ``decode_hint``)."""
        try:
            status = self._call(func, data)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise self._failure_or(failed(f"{what} trapped: {_first_line(e)}")) from None
        if status < 0:
            hint = names.get(status, f"status {status}")
            if status == error_status and self._out is not None:
                try:
                    hint = decode_hint(self._out, self.version)
                except DecodeError:
                    pass
            raise failed(hint)

    def _init(self, init: wasmtime.Func) -> None:
        self._call_checked(init, abi.encode_init_input(self.params, self.version), "init",
                           lambda hint: chain_init(f"init failed: {hint}"), abi.InitStatus.NAMES,
                           abi.InitStatus.INIT_ERROR, abi.decode_init_error)

    def look_back(self, records: bytes) -> None:
        """Call ``look_back`` with the records the stream's lookback selected (a
        ``SmartModuleInput`` at base offset 0: Fluvio's ``try_from_records``).

        Raises:
            SmartModuleFailure: 6007 (or 6008) when it fails.
        """
        self._call_checked(
            self.look_back_fn, abi.encode_input(0, records, self.version, params={}), "look_back",
            lambda hint: SmartModuleFailure(Error(ErrorCode.SmartModuleLookBackError, (hint,))),
            abi.LookbackStatus.NAMES, abi.LookbackStatus.PROPAGATED_ERROR, abi.decode_lookback_error)

    def transform_batch(self, base_offset: int, records: bytes, base_timestamp: int
                        ) -> abi.TransformOutput:
        """Run the transform over one batch's records (i32 count + records).

        Raises:
            SmartModuleFailure: 6004 or 6008; the module's own error comes back in the output.
        """
        data = abi.encode_input(base_offset, records, self.version, base_timestamp=base_timestamp,
                                params=self.params, accumulator=self.accumulator)
        try:
            status = self._call(self.transform, data)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise self._failure_or(runtime(f"{self.kind} trapped: {_first_line(e)}", base_offset,
                                           self.kind)) from None
        if status < 0:
            name = abi.TransformStatus.NAMES.get(status, f"status {status}")
            raise runtime(f"{self.kind} failed: {name}", base_offset, self.kind)
        if self._out is None:
            raise runtime(f"{self.kind} returned without calling copy_records", base_offset, self.kind)
        try:
            out = abi.decode_output(self._out, self.version, aggregate=self.kind == "aggregate")
        except DecodeError as e:
            raise runtime(f"{self.kind} returned bad output: {e}", base_offset, self.kind) from None
        if out.accumulator is not None:
            self.accumulator = out.accumulator
        return out


def _first_line(e: BaseException) -> str:
    """What went wrong, in one line: the cause wasmtime gives after its backtrace ("wasm trap:
    all fuel consumed by WebAssembly"), else the first line."""
    s = str(e).strip()
    if "Caused by:" in s:
        s = s.split("Caused by:", 1)[1].strip()
    return s.splitlines()[0].strip() if s else type(e).__name__


__all__ = ["KIND_TAG", "TRANSFORMS", "Engine", "Instance", "Limits", "SmartModuleFailure"]
